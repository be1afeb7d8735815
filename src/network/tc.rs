//! Pod bandwidth limits as traffic control on the host end of the pod's
//! veth, over rtnetlink (no `tc` process), as the CNI bandwidth plugin sets
//! them up:
//!
//! - traffic *into* the pod leaves the host through the veth: a TBF qdisc
//!   at the veth's root shapes it;
//! - traffic *out of* the pod arrives on the veth, where the kernel cannot
//!   queue it: an ingress qdisc and a u32 filter redirect all of it to an
//!   ifb device of the pod's own, whose root TBF shapes it on the way back
//!   into the stack. Shaping rather than policing (the `police` action is
//!   not in every kernel, and drops make TCP overshoot and stall).
//!
//! Deleting the veth removes its qdiscs and filter; the ifb is a link of
//! its own and is deleted with the veth ([`super::builtin`]). rtnetlink has
//! requests for the ingress qdisc and the redirect but none for TBF, whose
//! message is built here from netlink-packet-route's TC types.

use futures_util::StreamExt;
use rtnetlink::packet_core::{
    DefaultNla, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST,
};
use rtnetlink::packet_route::tc::{TcAttribute, TcHandle, TcMessage, TcOption};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::LinkIfb;

use super::bandwidth::{Bandwidth, TokenBucket};
use super::error::NetworkError;
use super::link::Netlink;

/// `TCA_TBF_PARMS`: `struct tc_tbf_qopt`.
const TCA_TBF_PARMS: u16 = 1;
/// `TCA_TBF_BURST`: the bucket in bytes (the kernel then ignores the
/// ticks in the parameters).
const TCA_TBF_BURST: u16 = 6;
/// `TC_LINKLAYER_ETHERNET`: the kernel computes transmit times itself and
/// needs no rate table.
const TC_LINKLAYER_ETHERNET: u8 = 1;
/// `parent ffff:`, where filters of the ingress qdisc hang.
const INGRESS_PARENT: u32 = 0xffff_0000;

/// The ifb that shapes a pod's egress: `pvb` and the start of the pod ID,
/// like its veth (`pvc…`, [`super::host_veth_name`]), so it is found again
/// from the ID alone.
pub fn ifb_name(pod_id: &str) -> String {
    let veth = super::host_veth_name(pod_id);
    format!("pvb{}", &veth[3..])
}

/// `struct tc_ratespec` for `rate` bytes per second.
fn ratespec(rate: u32) -> [u8; 12] {
    let mut out = [0u8; 12];
    // cell_log 0, linklayer, overhead 0, cell_align 0, mpu 0, then rate.
    out[1] = TC_LINKLAYER_ETHERNET;
    out[8..12].copy_from_slice(&rate.to_ne_bytes());
    out
}

/// `struct tc_tbf_qopt`: rate, no peak rate, limit, buffer, mtu 0.
fn tbf_parms(bucket: &TokenBucket) -> Vec<u8> {
    let mut out = Vec::with_capacity(36);
    out.extend_from_slice(&ratespec(bucket.rate));
    out.extend_from_slice(&[0u8; 12]);
    out.extend_from_slice(&bucket.limit.to_ne_bytes());
    out.extend_from_slice(&bucket.buffer_ticks.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out
}

/// `RTM_NEWQDISC` for a root TBF (handle 1:) on link `index`.
fn tbf_message(index: u32, bucket: &TokenBucket) -> TcMessage {
    let mut msg = TcMessage::with_index(index as i32);
    msg.header.handle = TcHandle { major: 1, minor: 0 };
    msg.header.parent = TcHandle::ROOT;
    msg.attributes.push(TcAttribute::Kind("tbf".to_owned()));
    msg.attributes.push(TcAttribute::Options(vec![
        TcOption::Other(DefaultNla::new(TCA_TBF_PARMS, tbf_parms(bucket))),
        TcOption::Other(DefaultNla::new(
            TCA_TBF_BURST,
            bucket.burst.to_ne_bytes().to_vec(),
        )),
    ]));
    msg
}

impl Netlink {
    /// Applies `limits` to the host end `veth` of a pod; `ifb` is the name
    /// for the egress device. Nothing is done for an absent direction.
    pub(super) async fn limit_bandwidth(
        &self,
        veth: &str,
        ifb: &str,
        mtu: u32,
        limits: &Bandwidth,
    ) -> Result<(), NetworkError> {
        let veth_index = self.index(veth).await?;
        if let Some(rate) = limits.ingress {
            self.add_tbf(veth, veth_index, rate).await?;
        }
        if let Some(rate) = limits.egress {
            self.handle()
                .link()
                .add(LinkIfb::new(ifb).mtu(mtu).up().build())
                .execute()
                .await
                .map_err(|e| NetworkError::netlink("create ifb", ifb, e))?;
            let ifb_index = self.index(ifb).await?;
            self.add_tbf(ifb, ifb_index, rate).await?;
            self.handle()
                .qdisc()
                .add(veth_index as i32)
                .ingress()
                .execute()
                .await
                .map_err(|e| NetworkError::netlink("add ingress qdisc to", veth, e))?;
            // Every protocol, every packet: `protocol all u32 match u8 0 0
            // action mirred egress redirect dev <ifb>`. The protocol field
            // is in network byte order.
            let all = (libc::ETH_P_ALL as u16).to_be();
            let fail = |e| NetworkError::netlink("redirect ingress of", veth, e);
            self.handle()
                .traffic_filter(veth_index as i32)
                .add()
                .parent(INGRESS_PARENT)
                .protocol(all)
                .redirect(ifb_index)
                .map_err(fail)?
                .execute()
                .await
                .map_err(fail)?;
        }
        Ok(())
    }

    async fn add_tbf(
        &self,
        link: &str,
        index: u32,
        bits_per_second: u64,
    ) -> Result<(), NetworkError> {
        let bucket = TokenBucket::for_rate(bits_per_second);
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewQueueDiscipline(tbf_message(
            index, &bucket,
        )));
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        let fail = |e| NetworkError::netlink("add tbf qdisc to", link, e);
        let mut replies = self.handle().clone().request(req).map_err(fail)?;
        while let Some(reply) = replies.next().await {
            if let NetlinkPayload::Error(e) = reply.payload {
                // An ACK is an error message with no code.
                if e.code.is_some() {
                    return Err(fail(rtnetlink::Error::NetlinkError(e)));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_core::Emitable;

    #[test]
    fn ifb_names_pair_with_veth_names_and_fit_the_kernel() {
        let id = "0123456789abcdef0123";
        assert_eq!(ifb_name(id), "pvb0123456789ab");
        assert!(ifb_name(id).len() < libc::IFNAMSIZ);
        assert_ne!(ifb_name(id), super::super::host_veth_name(id));
    }

    #[test]
    fn tbf_parameters_have_the_kernels_layout() {
        let bucket = TokenBucket::for_rate(8_000_000);
        let parms = tbf_parms(&bucket);
        assert_eq!(parms.len(), 36, "sizeof(struct tc_tbf_qopt)");
        let word = |at: usize| u32::from_ne_bytes(parms[at..at + 4].try_into().unwrap());
        assert_eq!(parms[1], TC_LINKLAYER_ETHERNET);
        assert_eq!(word(8), 1_000_000, "rate in bytes/s");
        assert_eq!(word(20), 0, "no peak rate");
        assert_eq!(word(24), bucket.limit);
        assert_eq!(word(28), bucket.buffer_ticks);
        assert_eq!(word(32), 0, "no peak mtu");

        let msg = tbf_message(7, &bucket);
        assert_eq!(msg.header.index, 7);
        assert_eq!(msg.header.parent, TcHandle::ROOT);
        let mut bytes = vec![0u8; msg.buffer_len()];
        msg.emit(&mut bytes);
        // tcmsg (20) + kind "tbf\0" (8) + options header (4) + parms
        // (4 + 36) + burst (4 + 4).
        assert_eq!(bytes.len(), 20 + 8 + 4 + 40 + 8);
        assert_eq!(&bytes[24..27], b"tbf");
        let burst = u32::from_ne_bytes(bytes[bytes.len() - 4..].try_into().unwrap());
        assert_eq!(burst, bucket.burst);
    }
}

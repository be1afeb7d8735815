//! Answers for RPCs whose capability has not landed yet.

use tonic::Status;

/// `Unimplemented`, naming the RPC so a client log says what is missing.
pub(super) fn unimplemented(rpc: &str) -> Status {
    Status::unimplemented(format!("pvecri does not implement {} yet", camel_case(rpc)))
}

/// `run_pod_sandbox` -> `RunPodSandbox`, the name clients know the RPC by.
fn camel_case(snake: &str) -> String {
    snake
        .split('_')
        .flat_map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase())
                .into_iter()
                .chain(chars)
        })
        .collect()
}

/// Expands to trait methods that answer [`unimplemented`].
///
/// `#[async_trait]` runs before this macro is expanded, so the methods are
/// written in the shape async_trait itself produces: a boxed `Send` future
/// bound to the borrow of `self`.
macro_rules! unimplemented_rpcs {
    ($($method:ident($req:ty) -> $resp:ty;)*) => {
        $(
            fn $method<'life0, 'async_trait>(
                &'life0 self,
                _request: tonic::Request<$req>,
            ) -> ::std::pin::Pin<
                Box<
                    dyn ::std::future::Future<
                            Output = Result<tonic::Response<$resp>, tonic::Status>,
                        > + Send
                        + 'async_trait,
                >,
            >
            where
                'life0: 'async_trait,
                Self: 'async_trait,
            {
                Box::pin(async move {
                    Err($crate::cri::stub::unimplemented(stringify!($method)))
                })
            }
        )*
    };
}

pub(crate) use unimplemented_rpcs;

#[cfg(test)]
mod tests {
    #[test]
    fn names_the_rpc() {
        let s = super::unimplemented("pull_image");
        assert_eq!(s.code(), tonic::Code::Unimplemented);
        assert!(s.message().contains("PullImage"), "{}", s.message());
    }
}

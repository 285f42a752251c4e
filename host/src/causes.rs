//! An error with its chain of causes on one line, for log lines and delivery attempts:
//! HTTP clients' errors say little at the top ("client error (Connect)") and the reason
//! ("Connection refused") at the bottom.

use std::error::Error;

/// `head`, then each of `error`'s sources after a `: `.
pub fn with_causes(head: &str, error: &dyn Error) -> String {
    let mut line = head.to_string();
    let mut cause = error.source();
    while let Some(current) = cause {
        line.push_str(": ");
        line.push_str(&current.to_string());
        cause = current.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(Option<std::io::Error>);

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error")
        }
    }

    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.0.as_ref().map(|inner| inner as &(dyn Error + 'static))
        }
    }

    #[test]
    fn every_cause_follows_the_head() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(
            with_causes("cannot connect", &Outer(Some(refused))),
            "cannot connect: refused"
        );
        assert_eq!(with_causes("failed", &Outer(None)), "failed");
    }
}

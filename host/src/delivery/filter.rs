//! Event-type filters: which types a subscription or a stream wants.

/// A list of exact types (`chat:message:new`) and prefixes (`chat:*`, `*`); an empty
/// list lets every type through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeFilter {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl TypeFilter {
    /// Parses filters, saying which one is wrong and why.
    pub fn parse<S: AsRef<str>>(filters: &[S]) -> Result<TypeFilter, String> {
        let mut filter = TypeFilter::default();
        for text in filters {
            let text = text.as_ref().trim();
            if text.is_empty() {
                return Err(
                    "an event-type filter is empty; give a type such as chat:message:new or a prefix such as chat:*"
                        .into(),
                );
            }
            match text.strip_suffix('*') {
                Some(prefix) if !prefix.contains('*') => filter.prefixes.push(prefix.to_string()),
                _ if text.contains('*') => {
                    return Err(format!(
                        "event-type filter {text:?} has a '*' that is not at its end; '*' only ends a prefix, as in chat:*"
                    ));
                }
                _ => filter.exact.push(text.to_string()),
            }
        }
        Ok(filter)
    }

    pub fn matches(&self, event_type: &str) -> bool {
        (self.exact.is_empty() && self.prefixes.is_empty())
            || self.exact.iter().any(|t| t == event_type)
            || self.prefixes.iter().any(|p| event_type.starts_with(p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::TypeFilter;

    #[test]
    fn exact_and_prefix_filters() {
        let filter = TypeFilter::parse(&["chat:message:new", "shop:*"]).unwrap();
        assert!(filter.matches("chat:message:new"));
        assert!(!filter.matches("chat:message:newer"));
        assert!(!filter.matches("chat:channel:created"));
        assert!(filter.matches("shop:newOrderCreated"));
        assert!(TypeFilter::parse::<&str>(&[]).unwrap().matches("anything"));
        assert!(TypeFilter::parse(&["*"]).unwrap().matches("anything"));
    }

    #[test]
    fn stray_wildcards_are_refused() {
        assert!(TypeFilter::parse(&["chat:*:new"]).unwrap_err().contains("chat:*:new"));
        assert!(TypeFilter::parse(&[""]).is_err());
    }
}

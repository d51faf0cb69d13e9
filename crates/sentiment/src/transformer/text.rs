//! Text normalisation shared by training and inference.
//!
//! Tweets are rewritten the way the TweetEval / SemEval preprocessing does it: every
//! whitespace-separated chunk that is a `@mention` becomes `@user` and every URL (`http://`,
//! `https://`, `www.`) becomes `http`. Lower-casing is left to the tokenizer (the base model is
//! uncased), so this function only rewrites user names and links.

/// Normalises one text for the transformer: `@mentions` → `@user`, URLs → `http`, whitespace runs
/// collapsed to one space.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for chunk in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        if is_url(chunk) {
            out.push_str("http");
        } else if chunk.len() > 1 && chunk.starts_with('@') {
            out.push_str("@user");
        } else {
            out.push_str(chunk);
        }
    }
    out
}

fn is_url(chunk: &str) -> bool {
    let lower = |prefix: &str| {
        chunk
            .get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    };
    lower("http://") || lower("https://") || lower("www.")
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn rewrites_mentions_and_urls() {
        assert_eq!(
            normalize("@bob  loved it!! https://t.co/x see www.a.b @"),
            "@user loved it!! http see http @"
        );
        assert_eq!(normalize("HTTP://X.Y plain"), "http plain");
        assert_eq!(normalize(""), "");
    }
}

//! Cursor pagination of the list methods. A cursor is the opaque (base64)
//! offset of the next page's first item.

use std::ops::Range;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The range of the page of `len` items starting at `cursor`, and the
/// cursor of the next page if there is one. `Err` for a cursor this router
/// never issued. A cursor past the end (the list shrank) gives an empty,
/// last page.
pub fn page(
    len: usize,
    cursor: Option<&str>,
    size: usize,
) -> Result<(Range<usize>, Option<String>), String> {
    let start = match cursor {
        None => 0,
        Some(cursor) => decode(cursor).ok_or_else(|| format!("invalid cursor {cursor:?}"))?,
    };
    let start = start.min(len);
    let end = start.saturating_add(size.max(1)).min(len);
    let next = (end < len).then(|| URL_SAFE_NO_PAD.encode(end.to_string()));
    Ok((start..end, next))
}

fn decode(cursor: &str) -> Option<usize> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    std::str::from_utf8(&bytes).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::page;

    #[test]
    fn walks_every_item_once() {
        let mut seen = vec![];
        let mut cursor = None;
        loop {
            let (range, next) = page(250, cursor.as_deref(), 100).expect("valid cursor");
            seen.extend(range);
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, (0..250).collect::<Vec<usize>>());
    }

    #[test]
    fn refuses_foreign_cursors_and_tolerates_shrunk_lists() {
        assert!(page(2, Some("not a cursor!"), 10).is_err());
        let (range, next) = page(3, None, 2).expect("first page");
        assert_eq!((range, next.is_some()), (0..2, true));
        // The list shrank under the cursor: an empty last page, no error.
        let (range, next) = page(1, next.as_deref(), 2).expect("past the end");
        assert_eq!((range.len(), next), (0, None));
    }
}

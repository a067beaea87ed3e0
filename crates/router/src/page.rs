//! Cursor pagination of the list methods. A cursor is the opaque (base64)
//! offset of the next page's first item.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The page of `items` starting at `cursor`, and the cursor of the next
/// page if there is one. `Err` for a cursor this router never issued.
pub fn page<T: Clone>(
    items: &[T],
    cursor: Option<&str>,
    size: usize,
) -> Result<(Vec<T>, Option<String>), String> {
    let start = match cursor {
        None => 0,
        Some(cursor) => decode(cursor).ok_or_else(|| format!("invalid cursor {cursor:?}"))?,
    };
    let size = size.max(1);
    let end = start.saturating_add(size).min(items.len());
    let page = items.get(start..end).unwrap_or_default().to_vec();
    let next = (end < items.len()).then(|| URL_SAFE_NO_PAD.encode(end.to_string()));
    Ok((page, next))
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
        let items: Vec<u32> = (0..250).collect();
        let mut seen = vec![];
        let mut cursor = None;
        loop {
            let (items, next) = page(&items, cursor.as_deref(), 100).expect("valid cursor");
            seen.extend(items);
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, (0..250).collect::<Vec<_>>());
    }

    #[test]
    fn refuses_foreign_cursors_and_tolerates_shrunk_lists() {
        assert!(page(&[1, 2], Some("not a cursor!"), 10).is_err());
        let (items, next) = page(&[1, 2, 3], None, 2).expect("first page");
        assert_eq!((items, next.is_some()), (vec![1, 2], true));
        // The list shrank under the cursor: an empty last page, no error.
        let (items, next) = page(&[1], next.as_deref(), 2).expect("past the end");
        assert_eq!((items.len(), next), (0, None));
    }
}

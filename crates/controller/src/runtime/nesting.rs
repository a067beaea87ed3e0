//! A cap on how deeply JSON read from the apiserver nests. serde_json
//! refuses documents nested deeper than 128 levels, and kube parses a whole
//! LIST page (or watch event) at once: a single MCPTool whose free-form
//! `inputSchema` nests that deep would fail every replica's LIST of every
//! MCPTool, for ever, stalling the operator for all tenants. The apiserver
//! cannot bound the depth of a free-form field, so the operator's client
//! cuts what lies deeper than [`MAX_DEPTH`] before parsing; the member check
//! then finds the schema far deeper than it allows and says so.
//!
//! A streaming byte filter, so that it works on watch streams and LIST
//! bodies alike, copies nothing when nothing is too deep, and never recurses.

use bytes::Bytes;

/// Deepest nesting of objects and arrays passed on, counted from the
/// document's root (a LIST's items sit at 3, a watch event's object at 2):
/// room for everything the operator reads, well below serde_json's 128.
pub const MAX_DEPTH: u32 = 100;

/// What stands in for a value that was nested too deeply: a JSON string.
pub const CUT_MARKER: &[u8] = b"\"mcp-operator: nested too deeply, cut\"";

/// The filter's state between chunks of one response body.
#[derive(Debug)]
pub struct NestingLimit {
    max: u32,
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// While cutting: the depth at which the cut value closes.
    cutting_until: Option<u32>,
}

impl NestingLimit {
    pub fn new(max: u32) -> Self {
        Self {
            max,
            depth: 0,
            in_string: false,
            escaped: false,
            cutting_until: None,
        }
    }

    /// Passes `chunk` on, with every value that opens deeper than the limit
    /// replaced by [`CUT_MARKER`]. Returns `chunk` itself when it had
    /// nothing to cut.
    pub fn filter(&mut self, chunk: Bytes) -> Bytes {
        let mut out: Option<Vec<u8>> = None;
        for (index, &byte) in chunk.iter().enumerate() {
            let keep = self.step(byte);
            match (&mut out, keep) {
                (Some(out), Keep::Byte) => out.push(byte),
                (Some(out), Keep::Marker) => out.extend_from_slice(CUT_MARKER),
                (Some(_), Keep::Nothing) | (None, Keep::Byte) => {}
                (None, Keep::Marker | Keep::Nothing) => {
                    let mut copy = Vec::with_capacity(chunk.len());
                    copy.extend_from_slice(&chunk[..index]);
                    if keep == Keep::Marker {
                        copy.extend_from_slice(CUT_MARKER);
                    }
                    out = Some(copy);
                }
            }
        }
        out.map_or(chunk, Bytes::from)
    }

    fn step(&mut self, byte: u8) -> Keep {
        let cutting = self.cutting_until.is_some();
        let kept = if cutting { Keep::Nothing } else { Keep::Byte };
        if self.in_string {
            match (self.escaped, byte) {
                (true, _) => self.escaped = false,
                (false, b'\\') => self.escaped = true,
                (false, b'"') => self.in_string = false,
                _ => {}
            }
            return kept;
        }
        match byte {
            b'"' => self.in_string = true,
            b'{' | b'[' => {
                self.depth += 1;
                if !cutting && self.depth > self.max {
                    self.cutting_until = Some(self.depth - 1);
                    return Keep::Marker;
                }
            }
            b'}' | b']' => {
                self.depth = self.depth.saturating_sub(1);
                if cutting && self.cutting_until == Some(self.depth) {
                    self.cutting_until = None;
                    return Keep::Nothing;
                }
            }
            _ => {}
        }
        kept
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Keep {
    Byte,
    Marker,
    Nothing,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
    }

    /// Runs `input` through a limit, split into chunks of `size` bytes.
    fn filtered(input: &str, max: u32, size: usize) -> String {
        let mut limit = NestingLimit::new(max);
        let out: Vec<u8> = input
            .as_bytes()
            .chunks(size)
            .flat_map(|c| limit.filter(Bytes::copy_from_slice(c)).to_vec())
            .collect();
        String::from_utf8(out).expect("UTF-8 in, UTF-8 out")
    }

    #[test]
    fn shallow_documents_pass_unchanged_and_uncopied() {
        let doc = r#"{"items":[{"spec":{"inputSchema":{"type":"object","d":"{[{[\"}"}}}]}"#;
        let chunk = Bytes::from(doc);
        let out = NestingLimit::new(MAX_DEPTH).filter(chunk.clone());
        assert_eq!(out, chunk);
        assert_eq!(out.as_ptr(), chunk.as_ptr(), "no copy");
    }

    #[test]
    fn what_nests_too_deeply_is_cut_and_the_rest_parses() {
        let doc = format!(
            r#"{{"items":[{{"deep":{}}},{{"ok":[1,{{"b":2}}]}}]}}"#,
            nested(200)
        );
        for size in [1, 7, 4096] {
            let out = filtered(&doc, 10, size);
            let value: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
            assert_eq!(value["items"][1], serde_json::json!({"ok": [1, {"b": 2}]}));
            let mut cut = &value["items"][0]["deep"];
            for _ in 0..7 {
                cut = &cut["a"];
            }
            assert_eq!(
                cut,
                &serde_json::Value::String("mcp-operator: nested too deeply, cut".into())
            );
        }
    }

    #[test]
    fn brackets_inside_strings_and_escapes_do_not_count() {
        let doc = format!(r#"{{"s":"\"{}\\","t":{}}}"#, "[".repeat(50), nested(3));
        assert_eq!(filtered(&doc, 5, 3), doc);
    }

    #[test]
    fn a_stream_of_events_is_cut_event_by_event() {
        let deep = format!("{{\"object\":{}}}\n", nested(150));
        let shallow = "{\"object\":{\"a\":1}}\n";
        let stream = format!("{deep}{shallow}{deep}{shallow}");
        let out = filtered(&stream, MAX_DEPTH, 64);
        let events: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).expect("each event parses"))
            .collect();
        assert_eq!(events.len(), 4);
        assert_eq!(events[1], serde_json::json!({"object": {"a": 1}}));
        assert_eq!(events[3], events[1]);
    }

    #[test]
    fn documents_past_serde_jsons_limit_parse_after_the_cut() {
        let doc = format!("{{\"items\":[{}]}}", nested(10_000));
        assert!(serde_json::from_str::<serde_json::Value>(&doc).is_err());
        let out = filtered(&doc, MAX_DEPTH, 8192);
        assert!(serde_json::from_str::<serde_json::Value>(&out).is_ok());
    }
}

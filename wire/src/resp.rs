//! RESP, the Redis protocol (RESP2 and RESP3), as much of it as a proxy
//! that holds commands needs: where a client's command ends (an array of
//! bulk strings, or an inline line), where a server's reply ends (any
//! RESP2 or RESP3 value), and each shown as text.

use std::fmt::Write as _;

use crate::pg::FrameError;

/// The largest bulk string accepted (Redis's own default limit).
const MAX_BULK: i64 = 512 << 20;
/// The most elements of one aggregate.
const MAX_ELEMENTS: i64 = 1 << 24;

/// The length of the command at the front of `buf`, once it is whole:
/// a RESP array (`*N` then `N` bulk strings) or an inline command (a
/// line).
pub fn command_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    match buf.first() {
        None => Ok(None),
        Some(b'*') => value_len(buf, 0),
        Some(_) => Ok(find_line(buf, 0).map(|end| end + 1)),
    }
}

/// The length of the reply at the front of `buf`, once it is whole
/// (attributes, `|`, are read as part of the value they come before).
pub fn reply_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    value_len(buf, 0)
}

/// Whether a complete reply is an out-of-band push (`>`, RESP3): not the
/// answer to a command.
pub fn is_push(reply: &[u8]) -> bool {
    reply.first() == Some(&b'>')
}

/// The position of the `\n` that ends the line starting at `at`.
fn find_line(buf: &[u8], at: usize) -> Option<usize> {
    buf.get(at..)?.iter().position(|&b| b == b'\n').map(|p| at + p)
}

/// The integer of the header line at `at` (after its type byte), and the
/// position after the line.
fn header(buf: &[u8], at: usize) -> Result<Option<(i64, usize)>, FrameError> {
    let Some(end) = find_line(buf, at) else { return Ok(None) };
    let text = String::from_utf8_lossy(&buf[at + 1..end]);
    let text = text.trim_end_matches('\r');
    let n = text.parse::<i64>().map_err(|_| FrameError(format!("RESP: {:?} is not a length", text)))?;
    Ok(Some((n, end + 1)))
}

/// The end of the value starting at `at`, once it is whole.
fn value_end(buf: &[u8], at: usize) -> Result<Option<usize>, FrameError> {
    let Some(&tag) = buf.get(at) else { return Ok(None) };
    match tag {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Ok(find_line(buf, at).map(|end| end + 1)),
        b'$' | b'!' | b'=' => {
            let Some((len, after)) = header(buf, at)? else { return Ok(None) };
            if len < 0 {
                return Ok(Some(after));
            }
            if len > MAX_BULK {
                return Err(FrameError(format!("RESP: a bulk string of {len} bytes")));
            }
            let end = after + len as usize + 2;
            Ok((buf.len() >= end).then_some(end))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let Some((count, mut next)) = header(buf, at)? else { return Ok(None) };
            if count < 0 {
                return Ok(Some(next));
            }
            if count > MAX_ELEMENTS {
                return Err(FrameError(format!("RESP: an aggregate of {count} elements")));
            }
            let elements = if matches!(tag, b'%' | b'|') { count * 2 } else { count };
            for _ in 0..elements {
                let Some(end) = value_end(buf, next)? else { return Ok(None) };
                next = end;
            }
            if tag == b'|' {
                // An attribute comes before the value it describes.
                return value_end(buf, next);
            }
            Ok(Some(next))
        }
        other => Err(FrameError(format!("RESP: unknown type byte {:?}", other as char))),
    }
}

fn value_len(buf: &[u8], at: usize) -> Result<Option<usize>, FrameError> {
    Ok(value_end(buf, at)?.map(|end| end - at))
}

/// A whole command's words: the array's bulk strings, or the inline
/// line's words.
pub fn command_words(command: &[u8]) -> Vec<String> {
    if command.first() != Some(&b'*') {
        return String::from_utf8_lossy(command).split_whitespace().map(str::to_string).collect();
    }
    let Ok(Some((count, mut at))) = header(command, 0) else { return Vec::new() };
    let mut words = Vec::new();
    for _ in 0..count.max(0) {
        let Ok(Some((len, after))) = header(command, at) else { break };
        let end = after + len.max(0) as usize;
        words.push(String::from_utf8_lossy(command.get(after..end).unwrap_or(&[])).into_owned());
        at = end + 2;
    }
    words
}

/// A command in one line, its words quoted where they need it; a Lua
/// script's body cut short.
pub fn show_command(command: &[u8]) -> String {
    let words = command_words(command);
    let is_eval = words.first().is_some_and(|w| w.eq_ignore_ascii_case("EVAL"));
    let mut shown = String::new();
    for (k, word) in words.iter().enumerate() {
        if k > 0 {
            shown.push(' ');
        }
        let word = if is_eval && k == 1 && word.chars().count() > 40 {
            format!("{}…", word.chars().take(40).collect::<String>())
        } else {
            word.clone()
        };
        show_word(&mut shown, &word);
    }
    shown
}

fn show_word(out: &mut String, word: &str) {
    if !word.is_empty() && word.chars().all(|c| c.is_ascii_graphic() && c != '"') {
        out.push_str(word);
    } else {
        let _ = write!(out, "{word:?}");
    }
}

/// A whole reply in one line: `OK`, `(integer) 1`, `"text"`, `(nil)`,
/// `(error) ERR …`, `[a, b]`.
pub fn show_reply(reply: &[u8]) -> String {
    let mut out = String::new();
    show_value(reply, 0, &mut out);
    out
}

fn show_value(buf: &[u8], at: usize, out: &mut String) -> usize {
    let Some(&tag) = buf.get(at) else { return at };
    let line_end = find_line(buf, at).unwrap_or(buf.len().saturating_sub(1));
    let line =
        String::from_utf8_lossy(&buf[(at + 1).min(line_end)..line_end]).trim_end_matches('\r').to_string();
    match tag {
        b'+' => out.push_str(&line),
        b'-' => {
            let _ = write!(out, "(error) {line}");
        }
        b':' => {
            let _ = write!(out, "(integer) {line}");
        }
        b'_' => out.push_str("(nil)"),
        b',' | b'(' => out.push_str(&line),
        b'#' => out.push_str(if line == "t" { "(true)" } else { "(false)" }),
        b'$' | b'!' | b'=' => {
            let len: i64 = line.parse().unwrap_or(-1);
            if len < 0 {
                out.push_str("(nil)");
                return line_end + 1;
            }
            let start = line_end + 1;
            let end = (start + len as usize).min(buf.len());
            let text = String::from_utf8_lossy(&buf[start..end]);
            if tag == b'!' {
                let _ = write!(out, "(error) {text}");
            } else {
                let _ = write!(out, "{text:?}");
            }
            return end + 2;
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let count: i64 = line.parse().unwrap_or(-1);
            if count < 0 {
                out.push_str("(nil)");
                return line_end + 1;
            }
            let elements = if matches!(tag, b'%' | b'|') { count * 2 } else { count };
            let mut next = line_end + 1;
            out.push('[');
            for k in 0..elements {
                if k > 0 {
                    out.push_str(", ");
                }
                next = show_value(buf, next, out);
            }
            out.push(']');
            return next;
        }
        _ => out.push('?'),
    }
    line_end + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn array(words: &[&str]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", words.len()).into_bytes();
        for w in words {
            out.extend(format!("${}\r\n{w}\r\n", w.len()).into_bytes());
        }
        out
    }

    #[test]
    fn a_command_is_framed_only_once_it_is_whole() {
        let command = array(&["SET", "k", "v"]);
        for cut in 0..command.len() {
            assert_eq!(command_len(&command[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(command_len(&command), Ok(Some(command.len())));
        let mut pipeline = command.clone();
        pipeline.extend(array(&["GET", "k"]));
        assert_eq!(command_len(&pipeline), Ok(Some(command.len())));
        assert_eq!(command_len(b"PING\r\nPING\r\n"), Ok(Some(6)));
    }

    #[test]
    fn replies_of_every_type_are_framed() {
        let replies: [&[u8]; 12] = [
            b"+OK\r\n",
            b"-ERR no\r\n",
            b":12\r\n",
            b"$3\r\nabc\r\n",
            b"$-1\r\n",
            b"*2\r\n$1\r\na\r\n:1\r\n",
            b"*-1\r\n",
            b"_\r\n",
            b"%1\r\n+k\r\n:2\r\n",
            b"#t\r\n",
            b",1.5\r\n",
            b"|1\r\n+ttl\r\n:3\r\n+OK\r\n",
        ];
        for reply in replies {
            for cut in 0..reply.len() {
                assert_eq!(reply_len(&reply[..cut]), Ok(None), "{reply:?} cut at {cut}");
            }
            assert_eq!(reply_len(reply), Ok(Some(reply.len())), "{reply:?}");
        }
        assert!(reply_len(b"?x\r\n").is_err());
        assert!(is_push(b">2\r\n+message\r\n+x\r\n"));
    }

    #[test]
    fn commands_and_replies_are_shown_in_one_line() {
        assert_eq!(show_command(&array(&["SET", "key one", "v"])), "SET \"key one\" v");
        let script = "return redis.call('GET', KEYS[1]) or redis.call('SET', KEYS[1], ARGV[1])";
        let shown = show_command(&array(&["EVAL", script, "1", "k", "v"]));
        assert!(shown == "EVAL \"return redis.call('GET', KEYS[1]) or red…\" 1 k v", "{shown}");
        assert_eq!(show_reply(b"*3\r\n$1\r\na\r\n:1\r\n$-1\r\n"), "[\"a\", (integer) 1, (nil)]");
        assert_eq!(show_reply(b"-NOSCRIPT no\r\n"), "(error) NOSCRIPT no");
    }
}

//! Entries of a list, each of the kind its `type:` names (`broker.yaml`'s `sources:` and
//! `targets:`), read one by one, so every problem of every entry is reported at its own
//! key. Read through the enum that dispatches on `type:`, an entry's first problem would
//! hide the rest of the file and be placed at the entry's start.
//!
//! An entry is read from a copy of the file in which every other line is blank and its
//! `- ` and `type:` line are spaces: positions stay those of the file. An entry whose
//! problems blanking its keys repairs (an unknown key, an optional value of the wrong
//! type) stays, so the checks of the whole file still see it; any other leaves the file.

use std::path::Path;

use super::{ConfigError, indent_of, normalize, plain_key, repair};

/// A list whose entries are each of a kind named by their `type:`.
#[derive(Debug, Clone, Copy)]
pub struct TaggedList<'a> {
    /// The top-level key holding the list (`sources`).
    pub key: &'a str,
    /// What one entry is, in messages (`source`).
    pub what: &'a str,
    /// Every kind `type:` may name.
    pub kinds: &'a [&'a str],
    /// Read one entry as the config of a kind; `None` for a kind not in `kinds`.
    pub read: fn(&str, &Entry<'_>) -> Option<EntryRead>,
}

/// One entry of a [`TaggedList`], ready to be read as the config of its kind.
#[derive(Debug)]
pub struct Entry<'a> {
    path: &'a Path,
    resolved: &'a str,
    text: String,
}

/// What reading one entry found.
#[derive(Debug)]
pub struct EntryRead {
    pub problems: Vec<ConfigError>,
    /// The entry's text with the keys that had problems blanked, when what is left reads.
    repaired: Option<String>,
}

impl Entry<'_> {
    /// Read the entry as a `T`, every problem reported.
    pub fn read<T: serde::de::DeserializeOwned>(&self) -> EntryRead {
        let mut problems = Vec::new();
        let repaired = repair::<T>(self.path, self.resolved, self.text.clone(), &mut problems);
        let text = repaired.value.is_some().then_some(repaired.text).filter(|_| repaired.complete);
        EntryRead { problems, repaired: text }
    }
}

/// Read every entry of `list` in `current` on its own; problems go to `errors`. An entry
/// with problems is repaired in `current` or blanked out of it. Returns `false` when an
/// entry had to go.
pub(super) fn read_list(
    list: &TaggedList<'_>,
    path: &Path,
    resolved: &str,
    current: &mut String,
    errors: &mut Vec<ConfigError>,
) -> bool {
    let mut lines: Vec<String> = current.split_inclusive('\n').map(str::to_string).collect();
    let Some((key_line, items)) = list_items(&lines, list.key) else { return true };
    let mut kept = 0;
    let mut complete = true;
    for (start, end) in items.iter().copied() {
        let (text, typed) = isolate(&lines, start, end);
        let Some((type_line, column, kind)) = typed else {
            // No `type:` line of its own (a flow mapping, a missing type): the whole
            // file's reading reports it.
            kept += 1;
            continue;
        };
        let entry = Entry { path, resolved, text };
        let read = (list.read)(&kind, &entry).unwrap_or_else(|| {
            let message =
                format!("unknown {} type `{kind}`, expected one of {}", list.what, list.kinds.join(", "));
            let line = u64::try_from(type_line + 1).unwrap_or(0);
            let problem = ConfigError { file: normalize(path), line, column, message };
            EntryRead { problems: vec![problem], repaired: None }
        });
        if read.problems.is_empty() {
            kept += 1;
            continue;
        }
        errors.extend(read.problems);
        let stays = read.repaired.is_some_and(|r| apply_blanks(&mut lines, &r, start, end, type_line));
        if stays {
            kept += 1;
        } else {
            blank_lines(&mut lines, start, end);
            complete = false;
        }
    }
    if kept == 0 && !complete {
        // An empty block would read as no list at all.
        if let Some(line) = lines.get_mut(key_line) {
            *line = format!("{}: []\n", list.key);
        }
    }
    *current = lines.concat();
    complete
}

/// The line of the top-level `key:` and its items, each as a range of lines.
fn list_items(lines: &[String], key: &str) -> Option<(usize, Vec<(usize, usize)>)> {
    let key_line = lines.iter().position(|l| {
        indent_of(l) == 0
            && plain_key(l).is_some_and(|(k, _)| k == key)
            && l.split_once(':')
                .is_some_and(|(_, rest)| rest.trim().is_empty() || rest.trim().starts_with('#'))
    })?;
    let block_end = (key_line + 1..lines.len())
        .find(|&i| lines.get(i).is_some_and(|l| is_content(l) && indent_of(l) == 0 && !is_dash(l)))
        .unwrap_or(lines.len());
    let dashes: Vec<usize> =
        (key_line + 1..block_end).filter(|&i| lines.get(i).is_some_and(|l| is_dash(l))).collect();
    let indent = dashes.iter().filter_map(|&i| lines.get(i)).map(|l| indent_of(l)).min()?;
    let starts: Vec<usize> =
        dashes.into_iter().filter(|&i| lines.get(i).is_some_and(|l| indent_of(l) == indent)).collect();
    let ends = starts.iter().skip(1).copied().chain(std::iter::once(block_end));
    Some((key_line, starts.iter().copied().zip(ends).collect()))
}

/// A copy of the file with only lines `start..end`, the item's `-` a space, and its
/// `type:` line blank; and that line, the value's column and the kind it names.
fn isolate(lines: &[String], start: usize, end: usize) -> (String, Option<(usize, u64, String)>) {
    let mut out: Vec<String> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| if (start..end).contains(&i) { l.clone() } else { blank(l) })
        .collect();
    if let Some(first) = out.get_mut(start) {
        *first = first.replacen('-', " ", 1);
    }
    let key_indent = (start..end).filter_map(|i| out.get(i)).find(|l| is_content(l)).map(|l| indent_of(l));
    let typed = (start..end).find_map(|i| {
        let line = out.get(i)?;
        let (key, indent) = plain_key(line)?;
        if key != "type" || Some(indent) != key_indent {
            return None;
        }
        let (before, rest) = line.split_once(':')?;
        let value = rest.split(" #").next()?.trim();
        let offset = before.len() + 1 + rest.len() - rest.trim_start().len();
        let kind = value.trim_matches(|c| c == '"' || c == '\'').to_string();
        Some((i, u64::try_from(offset + 1).ok()?, kind))
    });
    if let Some(line) = typed.as_ref().and_then(|(i, _, _)| out.get_mut(*i)) {
        *line = blank(line);
    }
    (out.concat(), typed)
}

/// Blank in `lines` what the repair blanked of the item `start..end`; `false` (nothing
/// changed) when that took the item's first line, without which the rest is no item.
fn apply_blanks(lines: &mut [String], repaired: &str, start: usize, end: usize, type_line: usize) -> bool {
    let repaired: Vec<&str> = repaired.split_inclusive('\n').collect();
    let taken = |i: usize| {
        repaired.get(i).is_some_and(|r| r.trim().is_empty()) && lines.get(i).is_some_and(|l| is_content(l))
    };
    if taken(start) && start != type_line {
        return false;
    }
    let gone: Vec<usize> = (start..end).filter(|&i| i != type_line && taken(i)).collect();
    for i in gone {
        if let Some(line) = lines.get_mut(i) {
            *line = blank(line);
        }
    }
    true
}

/// Blank out the list item holding 1-based `line`: from its `-` line to the next line
/// indented as little. `None` when `line` is in no item or the item is blank already.
pub(super) fn blank_item(text: &str, line: usize) -> Option<String> {
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    let at = line.checked_sub(1)?;
    let limit = lines.get(at).filter(|l| is_content(l)).map_or(usize::MAX, |l| indent_of(l));
    let start =
        (0..=at).rev().find(|&i| lines.get(i).is_some_and(|l| is_dash(l) && indent_of(l) <= limit))?;
    let indent = lines.get(start).map_or(0, |l| indent_of(l));
    let end = (start + 1..lines.len())
        .find(|&i| lines.get(i).is_some_and(|l| is_content(l) && indent_of(l) <= indent))
        .unwrap_or(lines.len());
    if !(start..end).any(|i| lines.get(i).is_some_and(|l| is_content(l))) {
        return None;
    }
    blank_lines(&mut lines, start, end);
    // A list left with no item would read as no list at all: make it an empty one.
    let parent = (0..start).rev().find(|&i| {
        lines.get(i).is_some_and(|l| {
            is_content(l) && (indent_of(l) < indent || indent_of(l) == indent && !is_dash(l))
        })
    });
    if let Some(parent) = parent.filter(|&p| lines.get(p).is_some_and(|l| l.trim_end().ends_with(':'))) {
        let parent_indent = lines.get(parent).map_or(0, |l| indent_of(l));
        let emptied = lines
            .iter()
            .skip(parent + 1)
            .take_while(|l| {
                !is_content(l) || indent_of(l) > parent_indent || is_dash(l) && indent_of(l) == parent_indent
            })
            .all(|l| !is_content(l));
        if let Some(line) = lines.get_mut(parent).filter(|_| emptied) {
            *line = format!("{} []\n", line.trim_end());
        }
    }
    Some(lines.concat())
}

fn blank_lines(lines: &mut [String], start: usize, end: usize) {
    for line in lines.iter_mut().take(end).skip(start) {
        *line = blank(line);
    }
}

/// The line with every character but its newline a space.
fn blank(line: &str) -> String {
    line.chars().map(|c| if c == '\n' { c } else { ' ' }).collect()
}

/// Not blank and not a comment.
fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// A block sequence item: `- ...` or a lone `-`.
fn is_dash(line: &str) -> bool {
    let t = line.trim();
    t == "-" || t.starts_with("- ")
}

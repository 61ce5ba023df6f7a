//! Shared rendering of located problems (`file:line:column: message`), so config and
//! mapping errors read the same way.

use std::fmt;

/// Write each item on its own line.
pub(crate) fn write_lines<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str("\n")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

//! Field templates such as `"{first_name} {last_name}"`, parsed once into segments.
//!
//! Syntax: `{column}` inserts the value of a CSV column (the name is normalised like the CSV
//! header: trimmed, lowercased, inner whitespace collapsed); `{{` and `}}` are literal braces;
//! everything else is literal text.
//!
//! The reader renders through [`BoundTemplate`]: a template bound once to the positions of its
//! columns in a row, so rendering looks nothing up by name.

use std::fmt;

use super::values::normalize_column;

/// A parsed template.
///
/// ```
/// use shared::config::Template;
///
/// let t = Template::parse("{first_name} {last_name} {{HR}}").unwrap();
/// let mut out = String::new();
/// t.render(
///     |column| match column {
///         "first_name" => Some("Ada"),
///         "last_name" => Some("Lovelace"),
///         _ => None,
///     },
///     &mut out,
/// );
/// assert_eq!(out, "Ada Lovelace {HR}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    segments: Vec<Segment>,
}

/// One piece of a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Literal text (braces already unescaped).
    Literal(String),
    /// A column placeholder; the name is normalised (see [`normalize_column`]).
    Column(String),
}

/// Why a template does not parse. Offsets are byte offsets into the template text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("`{{` at offset {0} is never closed (write `{{{{` for a literal brace)")]
    Unclosed(usize),
    #[error("`}}` at offset {0} has no matching `{{` (write `}}}}` for a literal brace)")]
    StrayClose(usize),
    #[error("empty placeholder `{{}}` at offset {0}")]
    EmptyPlaceholder(usize),
    #[error("`{{` inside the placeholder opened at offset {0}")]
    Nested(usize),
}

impl Template {
    /// Parses a template.
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut chars = source.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().is_some_and(|&(_, n)| n == '{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().is_some_and(|&(_, n)| n == '}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => return Err(TemplateError::StrayClose(at)),
                '{' => {
                    let start = at + 1;
                    let end = loop {
                        match chars.next() {
                            None => return Err(TemplateError::Unclosed(at)),
                            Some((_, '{')) => return Err(TemplateError::Nested(at)),
                            Some((end, '}')) => break end,
                            Some(_) => {}
                        }
                    };
                    let column = normalize_column(&source[start..end]);
                    if column.is_empty() {
                        return Err(TemplateError::EmptyPlaceholder(at));
                    }
                    if !literal.is_empty() {
                        segments.push(Segment::Literal(std::mem::take(&mut literal)));
                    }
                    segments.push(Segment::Column(column));
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        Ok(Template { source: source.to_owned(), segments })
    }

    /// Appends the rendered template to `out`. `get` receives a normalised column name and
    /// returns that column's value for the current row; `None` renders as nothing. The
    /// renderer neither trims nor allocates beyond growing `out`.
    pub fn render<'v, F>(&self, get: F, out: &mut String)
    where
        F: Fn(&str) -> Option<&'v str>,
    {
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Column(column) => {
                    if let Some(value) = get(column) {
                        out.push_str(value);
                    }
                }
            }
        }
    }

    /// Convenience wrapper around [`Template::render`] returning a new string.
    pub fn render_to_string<'v, F>(&self, get: F) -> String
    where
        F: Fn(&str) -> Option<&'v str>,
    {
        let mut out = String::new();
        self.render(get, &mut out);
        out
    }

    /// The normalised column names referenced, in order of appearance (may repeat).
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Column(c) => Some(c.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// True when the template references no column.
    pub fn is_constant(&self) -> bool {
        self.columns().next().is_none()
    }

    /// True when the template is exactly one placeholder, e.g. `"{employee_id}"`.
    pub fn single_column(&self) -> Option<&str> {
        match self.segments.as_slice() {
            [Segment::Column(c)] => Some(c),
            _ => None,
        }
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The template text as written in the config.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl Template {
    /// Binds the template to row positions: `position` maps a normalised column name to its
    /// index in the rows that will be rendered. A column it does not know renders as nothing,
    /// like a `None` from the `get` of [`Template::render`].
    ///
    /// ```
    /// use shared::config::Template;
    ///
    /// let t = Template::parse("{first_name} {last_name}").unwrap();
    /// let bound = t.bind(|column| ["last_name", "first_name"].iter().position(|c| *c == column));
    /// let row = ["Lovelace ", " Ada"];
    /// let mut out = String::new();
    /// bound.render_trimmed_into(|i| row[i], &mut out);
    /// assert_eq!(out, "Ada Lovelace");
    /// ```
    pub fn bind(&self, mut position: impl FnMut(&str) -> Option<usize>) -> BoundTemplate {
        let mut parts: Vec<BoundPart> = Vec::with_capacity(self.segments.len());
        for segment in &self.segments {
            match segment {
                Segment::Column(column) => {
                    if let Some(i) = position(column) {
                        parts.push(BoundPart::Column(i));
                    }
                }
                // A column left out can leave two literals side by side: keep them as one.
                Segment::Literal(text) => match parts.last_mut() {
                    Some(BoundPart::Literal(last)) => *last = format!("{last}{text}").into_boxed_str(),
                    _ => parts.push(BoundPart::Literal(text.as_str().into())),
                },
            }
        }
        BoundTemplate { parts }
    }
}

/// A [`Template`] bound to the column positions of a row (see [`Template::bind`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundTemplate {
    parts: Vec<BoundPart>,
}

/// One piece of a [`BoundTemplate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundPart {
    Literal(Box<str>),
    /// The value at this position of the row.
    Column(usize),
}

impl BoundTemplate {
    /// Appends the rendered template to `out`; `value` gives the row's value at a position.
    pub fn render<'v>(&self, value: impl Fn(usize) -> &'v str, out: &mut String) {
        for part in &self.parts {
            match part {
                BoundPart::Literal(text) => out.push_str(text),
                BoundPart::Column(i) => out.push_str(value(*i)),
            }
        }
    }

    /// Replaces `out` with the rendered template, trimmed. `out` keeps its capacity, so a
    /// reader that reuses it from row to row allocates only for a longer value, and a template
    /// that renders blank into an `out` without capacity allocates nothing. A single placeholder
    /// or literal is trimmed and copied; anything else is rendered into `out` and trimmed there.
    pub fn render_trimmed_into<'v>(&self, value: impl Fn(usize) -> &'v str, out: &mut String) {
        out.clear();
        match self.parts.as_slice() {
            [] => {}
            [BoundPart::Column(i)] => out.push_str(crate::input::trim(value(*i))),
            [BoundPart::Literal(text)] => out.push_str(text.trim()),
            _ if out.capacity() == 0 && self.renders_empty(&value) => {}
            _ => {
                self.render(&value, out);
                let kept = crate::input::trim(out);
                let start = kept.as_ptr() as usize - out.as_ptr() as usize;
                out.truncate(start + kept.len());
                if start > 0 {
                    out.drain(..start);
                }
            }
        }
    }

    /// Whether the template would render empty once trimmed (every literal and value blank),
    /// decided without rendering.
    pub fn renders_empty<'v>(&self, value: impl Fn(usize) -> &'v str) -> bool {
        self.parts.iter().all(|part| match part {
            BoundPart::Literal(text) => crate::input::trim(text).is_empty(),
            BoundPart::Column(i) => crate::input::trim(value(*i)).is_empty(),
        })
    }

    pub fn parts(&self) -> &[BoundPart] {
        &self.parts
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn row() -> HashMap<String, String> {
        HashMap::from([
            ("first_name".to_owned(), "Ada".to_owned()),
            ("last_name".to_owned(), "Lovelace".to_owned()),
            ("first name".to_owned(), "Spaced".to_owned()),
        ])
    }

    #[test]
    fn a_template_renders_columns_and_literals() {
        let t = Template::parse("{first_name} {last_name}").unwrap();
        let row = row();
        let mut out = String::from(">");
        t.render(|c| row.get(c).map(String::as_str), &mut out);
        assert_eq!(out, ">Ada Lovelace");
        assert_eq!(t.columns().collect::<Vec<_>>(), ["first_name", "last_name"]);
    }

    #[test]
    fn doubled_braces_render_as_literal_braces() {
        let t = Template::parse("{{id}}={first_name}}}").unwrap();
        let row = row();
        assert_eq!(t.render_to_string(|c| row.get(c).map(String::as_str)), "{id}=Ada}");
        assert_eq!(t.columns().collect::<Vec<_>>(), ["first_name"]);
    }

    #[test]
    fn placeholders_are_normalised_like_headers() {
        let t = Template::parse("{  First   NAME }").unwrap();
        assert_eq!(t.single_column(), Some("first name"));
        let row = row();
        assert_eq!(t.render_to_string(|c| row.get(c).map(String::as_str)), "Spaced");
    }

    #[test]
    fn a_missing_value_renders_as_nothing() {
        let t = Template::parse("<{nope}>").unwrap();
        assert_eq!(t.render_to_string(|_| None), "<>");
    }

    #[test]
    fn constant_templates_have_no_columns() {
        let t = Template::parse("en-US").unwrap();
        assert!(t.is_constant());
        assert_eq!(t.render_to_string(|_| None), "en-US");
        assert!(Template::parse("").unwrap().is_constant());
    }

    /// Positions of the columns of [`row`] in the row slice the bound tests render.
    const COLUMNS: [&str; 3] = ["last_name", "first name", "first_name"];

    fn position(column: &str) -> Option<usize> {
        COLUMNS.iter().position(|c| *c == column)
    }

    fn render_both(text: &str, values: [&str; 3]) -> (String, String) {
        let t = Template::parse(text).unwrap();
        let by_name = |c: &str| position(c).map(|i| values[i]);
        let bound = t.bind(position);
        let mut out = String::from("the previous row's value");
        bound.render_trimmed_into(|i| values[i], &mut out);
        (t.render_to_string(by_name).trim().to_owned(), out)
    }

    #[test]
    fn a_bound_template_renders_what_the_named_lookup_renders_trimmed() {
        let values = ["  Lovelace ", "Spaced", " Ada"];
        for text in [
            "{first_name} {last_name}",
            "{first_name}",
            "{  First   NAME }",
            "  constant  ",
            "",
            "{{id}}={first_name}}}",
            "<{nope}>",
            "{nope}",
            "{nope}{first_name}",
            "a{nope}b {last_name}",
            "{first_name}@{last_name}.example",
        ] {
            let (named, bound) = render_both(text, values);
            assert_eq!(bound, named, "{text:?}");
        }
    }

    #[test]
    fn renders_empty_agrees_with_rendering_for_blank_and_filled_values() {
        for values in [["  Lovelace ", "Spaced", " Ada"], ["", " ", "\u{a0}"], ["", "", "x"]] {
            for text in ["{first_name} {last_name}", "  ", "", "{nope}", " <{nope}> ", "{first name}", "{last_name}."] {
                let bound = Template::parse(text).unwrap().bind(position);
                let mut rendered = String::new();
                bound.render_trimmed_into(|i| values[i], &mut rendered);
                assert_eq!(bound.renders_empty(|i| values[i]), rendered.is_empty(), "{text:?} with {values:?}");
            }
        }
    }

    #[test]
    fn a_bound_template_renders_blank_values_as_an_empty_string_without_capacity() {
        let t = Template::parse(" {first_name} {last_name} ").unwrap();
        let mut out = String::new();
        t.bind(position).render_trimmed_into(|_| " ", &mut out);
        assert_eq!(out, "");
        assert_eq!(out.capacity(), 0, "an empty result allocates nothing");
    }

    #[test]
    fn binding_replaces_names_by_positions_and_merges_literals_around_unknown_columns() {
        let t = Template::parse("{first_name} {last_name}").unwrap();
        assert_eq!(
            t.bind(position).parts(),
            [BoundPart::Column(2), BoundPart::Literal(" ".into()), BoundPart::Column(0)]
        );
        let t = Template::parse("a{nope}b").unwrap();
        assert_eq!(t.bind(position).parts(), [BoundPart::Literal("ab".into())]);
        assert_eq!(Template::parse("").unwrap().bind(position).parts(), []);
    }

    #[test]
    fn a_bound_template_appends_untrimmed_and_reuses_the_output_buffer() {
        let bound = Template::parse("{first_name} {last_name}").unwrap().bind(position);
        let mut out = String::from(">");
        bound.render(|i| ["Lovelace ", "", " Ada"][i], &mut out);
        assert_eq!(out, "> Ada Lovelace ");
        let mut out = String::with_capacity(64);
        let before = out.as_ptr();
        bound.render_trimmed_into(|i| ["Hopper", "", "Grace"][i], &mut out);
        assert_eq!(out, "Grace Hopper");
        bound.render_trimmed_into(|i| ["Lovelace ", "", " Ada"][i], &mut out);
        assert_eq!(out, "Ada Lovelace", "the previous value is replaced");
        bound.render_trimmed_into(|i| ["  ", "", " "][i], &mut out);
        assert_eq!(out, "", "a blank rendering is trimmed away");
        assert_eq!(out.as_ptr(), before, "the buffer is never reallocated");
    }

    #[test]
    fn malformed_templates_are_rejected_with_the_offset() {
        assert_eq!(Template::parse("a {b"), Err(TemplateError::Unclosed(2)));
        assert_eq!(Template::parse("a } b"), Err(TemplateError::StrayClose(2)));
        assert_eq!(Template::parse("x{ }"), Err(TemplateError::EmptyPlaceholder(1)));
        assert_eq!(Template::parse("{a{b}}"), Err(TemplateError::Nested(0)));
        assert!(TemplateError::Unclosed(2).to_string().contains("write `{{` for a literal brace"));
    }
}

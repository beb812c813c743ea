//! The template language of notification emails, small on purpose:
//! `{{name}}` substitutes a variable (HTML-escaped in `.html` templates),
//! `{{#if name}}…{{else}}…{{/if}}` tests that a variable is non-empty,
//! `{{#each list}}…{{/each}}` repeats for each row of a list (inside, a
//! row's fields are plain `{{field}}`), and `{{! comment }}` is dropped.
//!
//! A block tag or comment alone on its line takes the whole line with it,
//! so text templates can put each tag on a line of its own. Every name a
//! template uses is checked against the message's variables before
//! anything is rendered, in every branch: a misspelt name is an error even
//! in a branch that this message does not take.

use std::collections::{BTreeMap, BTreeSet};

/// One row of a list: its fields by name.
pub type Row = BTreeMap<&'static str, String>;

/// A value a template can refer to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// Text; empty counts as false in `{{#if}}`.
    Text(String),
    /// Rows for `{{#each}}`; every row has exactly `fields`.
    List {
        /// The field names of every row (known even when there is no row).
        fields: &'static [&'static str],
        /// The rows, in order.
        rows: Vec<Row>,
    },
}

/// The variables of one message, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vars(BTreeMap<&'static str, Value>, BTreeSet<&'static str>);

impl Vars {
    /// No variables.
    pub fn new() -> Vars {
        Vars::default()
    }

    /// Sets a text variable.
    pub fn set(&mut self, name: &'static str, value: impl Into<String>) -> &mut Vars {
        self.0.insert(name, Value::Text(value.into()));
        self.1.remove(name);
        self
    }

    /// Sets a flag: `"yes"` when true, empty (false in `{{#if}}`) when not.
    pub fn flag(&mut self, name: &'static str, on: bool) -> &mut Vars {
        self.set(name, if on { "yes" } else { "" });
        self.1.insert(name);
        self
    }

    /// Whether `name` was set with [`Vars::flag`] (a webhook body shows it
    /// as a boolean).
    pub fn is_flag(&self, name: &str) -> bool {
        self.1.contains(name)
    }

    /// Sets a list variable.
    pub fn list(
        &mut self,
        name: &'static str,
        fields: &'static [&'static str],
        rows: Vec<Row>,
    ) -> &mut Vars {
        self.0.insert(name, Value::List { fields, rows });
        self
    }

    /// A variable by name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// Every variable, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Value)> {
        self.0.iter().map(|(k, v)| (*k, v))
    }

    /// A text variable's value (empty when unset or a list).
    pub fn text(&self, name: &str) -> &str {
        match self.0.get(name) {
            Some(Value::Text(t)) => t,
            _ => "",
        }
    }
}

/// How substituted values are written. In both, control characters
/// (newline, CR, ESC, other C0, DEL, C1) are shown escaped (`\n`, `\x1b`,
/// see [`crate::escape`]): every variable is one line, and a reason or a
/// key name from outside must not add lines to a message (a forged
/// paragraph, a second `Subject:`) or drive the reader's terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escape {
    /// No markup escaping (plain text, subjects).
    None,
    /// `&`, `<`, `>`, `"` and `'` as HTML entities.
    Html,
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    /// The top-level nodes.
    nodes: Vec<Node>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Text(String),
    Var {
        name: String,
        line: usize,
    },
    If {
        name: String,
        line: usize,
        then: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Each {
        name: String,
        line: usize,
        body: Vec<Node>,
    },
}

/// A token before blocks are matched.
#[derive(Debug)]
enum Tok {
    Text(String),
    Tag { body: String, line: usize },
}

impl Tok {
    /// Block tags and comments vanish with their line when alone on it.
    fn standalone_kind(&self) -> bool {
        match self {
            Tok::Tag { body, .. } => body.starts_with(['#', '/', '!']) || body.as_str() == "else",
            Tok::Text(_) => false,
        }
    }
}

/// An open block while parsing.
enum Open {
    If {
        name: String,
        line: usize,
        then: Option<Vec<Node>>,
    },
    Each {
        name: String,
        line: usize,
    },
}

impl Template {
    /// Parses `src`; errors name the line (`line 3: ...`).
    pub fn parse(src: &str) -> Result<Template, String> {
        let mut toks = tokenize(src)?;
        trim_standalone(&mut toks);
        // Each open block with the nodes collected inside it so far.
        let mut stack: Vec<(Open, Vec<Node>)> = Vec::new();
        let mut top: Vec<Node> = Vec::new();
        for tok in toks {
            let (body, line) = match tok {
                Tok::Text(t) => {
                    if !t.is_empty() {
                        current(&mut stack, &mut top).push(Node::Text(t));
                    }
                    continue;
                }
                Tok::Tag { body, line } => (body, line),
            };
            if body.starts_with('!') {
                continue;
            }
            if let Some(rest) = body.strip_prefix("#if ") {
                let name = ident(rest, line)?;
                stack.push((
                    Open::If {
                        name,
                        line,
                        then: None,
                    },
                    Vec::new(),
                ));
            } else if let Some(rest) = body.strip_prefix("#each ") {
                let name = ident(rest, line)?;
                stack.push((Open::Each { name, line }, Vec::new()));
            } else if body == "else" {
                match stack.last_mut() {
                    Some((Open::If { then, .. }, nodes)) if then.is_none() => {
                        *then = Some(std::mem::take(nodes));
                    }
                    _ => return Err(format!("line {line}: {{{{else}}}} outside {{{{#if}}}}")),
                }
            } else if body == "/if" {
                match stack.pop() {
                    Some((Open::If { name, line, then }, nodes)) => {
                        let (then, otherwise) = match then {
                            Some(t) => (t, nodes),
                            None => (nodes, Vec::new()),
                        };
                        current(&mut stack, &mut top).push(Node::If {
                            name,
                            line,
                            then,
                            otherwise,
                        });
                    }
                    _ => return Err(format!("line {line}: {{{{/if}}}} without {{{{#if}}}}")),
                }
            } else if body == "/each" {
                match stack.pop() {
                    Some((Open::Each { name, line }, body)) => {
                        current(&mut stack, &mut top).push(Node::Each { name, line, body });
                    }
                    _ => {
                        return Err(format!("line {line}: {{{{/each}}}} without {{{{#each}}}}"));
                    }
                }
            } else if body.starts_with(['#', '/', '>', '{', '&']) || body == "else" {
                return Err(format!(
                    "line {line}: unknown tag {{{{{body}}}}} (known: {{{{name}}}}, \
                     {{{{#if name}}}}, {{{{else}}}}, {{{{/if}}}}, {{{{#each name}}}}, \
                     {{{{/each}}}}, {{{{! comment}}}})"
                ));
            } else {
                let name = ident(&body, line)?;
                current(&mut stack, &mut top).push(Node::Var { name, line });
            }
        }
        if let Some((open, _)) = stack.pop() {
            let (what, name, line) = match open {
                Open::If { name, line, .. } => ("if", name, line),
                Open::Each { name, line } => ("each", name, line),
            };
            return Err(format!(
                "line {line}: {{{{#{what} {name}}}}} is never closed with {{{{/{what}}}}}"
            ));
        }
        Ok(Template { nodes: top })
    }

    /// Checks every name against `vars` (in every branch), then renders.
    pub fn render(&self, vars: &Vars, escape: Escape) -> Result<String, String> {
        check(&self.nodes, vars, None)?;
        let mut out = String::new();
        emit(&self.nodes, vars, None, escape, &mut out);
        Ok(out)
    }
}

fn current<'a>(stack: &'a mut [(Open, Vec<Node>)], top: &'a mut Vec<Node>) -> &'a mut Vec<Node> {
    match stack.last_mut() {
        Some((_, nodes)) => nodes,
        None => top,
    }
}

/// A variable name: letters, digits and `_`.
fn ident(s: &str, line: usize) -> Result<String, String> {
    let s = s.trim();
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(s.to_string())
    } else {
        Err(format!(
            "line {line}: {s:?} is not a variable name (letters, digits and _)"
        ))
    }
}

fn tokenize(src: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let mut rest = src;
    let mut line = 1;
    while let Some(start) = rest.find("{{") {
        let (text, after) = rest.split_at(start);
        line += text.matches('\n').count();
        toks.push(Tok::Text(text.to_string()));
        let after = &after[2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("line {line}: {{{{ without a closing }}}}"))?;
        let body = &after[..end];
        toks.push(Tok::Tag {
            body: body.trim().to_string(),
            line,
        });
        line += body.matches('\n').count();
        rest = &after[end + 2..];
    }
    toks.push(Tok::Text(rest.to_string()));
    Ok(toks)
}

/// Removes the line of each block tag or comment that stands alone on it
/// (only blanks beside it). Decided on the untouched tokens first, so that
/// two such tags on consecutive lines both go.
fn trim_standalone(toks: &mut [Tok]) {
    let n = toks.len();
    let text = |t: &Tok| match t {
        Tok::Text(s) => Some(s.clone()),
        Tok::Tag { .. } => None,
    };
    let blank = |s: &str| s.chars().all(|c| c == ' ' || c == '\t');
    let mut cut_tail = vec![false; n];
    let mut cut_head = vec![false; n];
    for i in 0..n {
        if !toks[i].standalone_kind() {
            continue;
        }
        // The tokenizer alternates text and tags, starting and ending with
        // text, so a tag always has text on both sides.
        let (Some(before), Some(after)) = (
            i.checked_sub(1).and_then(|p| toks.get(p)).and_then(text),
            toks.get(i + 1).and_then(text),
        ) else {
            continue;
        };
        let line_start = match before.rfind('\n') {
            Some(nl) => blank(&before[nl + 1..]),
            None => i == 1 && blank(&before),
        };
        let line_end = match after.find('\n') {
            Some(nl) => blank(&after[..nl]),
            None => i + 2 == n && blank(&after),
        };
        if line_start && line_end {
            cut_tail[i - 1] = true;
            cut_head[i + 1] = true;
        }
    }
    for (i, tok) in toks.iter_mut().enumerate() {
        if let Tok::Text(s) = tok {
            let end = if cut_tail[i] {
                s.rfind('\n').map_or(0, |nl| nl + 1)
            } else {
                s.len()
            };
            let start = if cut_head[i] {
                s.find('\n').map_or(s.len(), |nl| nl + 1)
            } else {
                0
            };
            *s = s.get(start..end.max(start)).unwrap_or_default().to_string();
        }
    }
}

/// What a name resolves to.
enum Found<'a> {
    Text(&'a str),
    List(&'static [&'static str], &'a [Row]),
}

/// Looks `name` up in the row (inside `{{#each}}`), then in `vars`. With
/// `row_fields` only (checking), a row field resolves to empty text.
fn lookup<'a>(
    name: &str,
    vars: &'a Vars,
    row: Option<(&'static [&'static str], Option<&'a Row>)>,
) -> Option<Found<'a>> {
    if let Some((fields, r)) = row
        && fields.contains(&name)
    {
        let text = r.and_then(|r| r.get(name)).map_or("", String::as_str);
        return Some(Found::Text(text));
    }
    match vars.get(name)? {
        Value::Text(t) => Some(Found::Text(t)),
        Value::List { fields, rows } => Some(Found::List(fields, rows)),
    }
}

fn check(nodes: &[Node], vars: &Vars, row: Option<&'static [&'static str]>) -> Result<(), String> {
    let scope = row.map(|f| (f, None));
    for node in nodes {
        match node {
            Node::Text(_) => {}
            Node::Var { name, line } => match lookup(name, vars, scope) {
                Some(Found::Text(_)) => {}
                Some(Found::List(..)) => {
                    return Err(format!(
                        "line {line}: {name} is a list: use {{{{#each {name}}}}}"
                    ));
                }
                None => return Err(unknown(name, *line, vars, row)),
            },
            Node::If {
                name,
                line,
                then,
                otherwise,
            } => {
                if lookup(name, vars, scope).is_none() {
                    return Err(unknown(name, *line, vars, row));
                }
                check(then, vars, row)?;
                check(otherwise, vars, row)?;
            }
            Node::Each { name, line, body } => match lookup(name, vars, scope) {
                Some(Found::List(fields, _)) => check(body, vars, Some(fields))?,
                Some(Found::Text(_)) => {
                    return Err(format!(
                        "line {line}: {name} is not a list: use {{{{#if {name}}}}}"
                    ));
                }
                None => return Err(unknown(name, *line, vars, row)),
            },
        }
    }
    Ok(())
}

fn unknown(name: &str, line: usize, vars: &Vars, row: Option<&[&str]>) -> String {
    let mut known: Vec<&str> = vars.iter().map(|(k, _)| k).collect();
    if let Some(fields) = row {
        known.extend(fields.iter().copied());
    }
    known.sort_unstable();
    format!(
        "line {line}: unknown variable {name:?}; this template knows {}",
        known.join(", ")
    )
}

fn emit(
    nodes: &[Node],
    vars: &Vars,
    row: Option<(&'static [&'static str], &Row)>,
    escape: Escape,
    out: &mut String,
) {
    let scope = row.map(|(f, r)| (f, Some(r)));
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Var { name, .. } => {
                if let Some(Found::Text(t)) = lookup(name, vars, scope) {
                    push_escaped(out, t, escape);
                }
            }
            Node::If {
                name,
                then,
                otherwise,
                ..
            } => {
                let on = match lookup(name, vars, scope) {
                    Some(Found::Text(t)) => !t.is_empty(),
                    Some(Found::List(_, rows)) => !rows.is_empty(),
                    None => false,
                };
                emit(if on { then } else { otherwise }, vars, row, escape, out);
            }
            Node::Each { name, body, .. } => {
                if let Some(Found::List(fields, rows)) = lookup(name, vars, scope) {
                    for r in rows {
                        emit(body, vars, Some((fields, r)), escape, out);
                    }
                }
            }
        }
    }
}

/// Appends `text`, escaped as `escape` says.
pub fn push_escaped(out: &mut String, text: &str, escape: Escape) {
    let text = crate::escape::controls(text);
    if escape == Escape::None {
        out.push_str(&text);
        return;
    }
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        let mut v = Vars::new();
        v.set("slot", "atlassian/ci-bot")
            .set("reason", "<script>alert('x')</script> & more")
            .flag("yes", true)
            .flag("no", false);
        let row = |s: &str| Row::from([("sink", s.to_string())]);
        v.list("sinks", &["sink"], vec![row("vault"), row("file<1>")]);
        v.list("none", &["sink"], vec![]);
        v
    }

    fn text(src: &str) -> String {
        Template::parse(src)
            .unwrap()
            .render(&vars(), Escape::None)
            .unwrap()
    }

    #[test]
    fn substitutes_and_escapes_only_html() {
        assert_eq!(text("key {{slot}}!"), "key atlassian/ci-bot!");
        assert_eq!(text("{{ slot }}"), "atlassian/ci-bot");
        let t = Template::parse("<p>{{reason}}</p>").unwrap();
        assert_eq!(
            t.render(&vars(), Escape::Html).unwrap(),
            "<p>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more</p>"
        );
        assert_eq!(
            t.render(&vars(), Escape::None).unwrap(),
            "<p><script>alert('x')</script> & more</p>"
        );
    }

    #[test]
    fn control_characters_in_values_are_shown_not_obeyed() {
        let mut v = vars();
        v.set("reason", "x\nSubject: urgent\r\n\x1b[2J\u{9b}1m\x00\x7f");
        let t = Template::parse("Subject: {{slot}}\nreason: {{reason}}\n").unwrap();
        let want = r"reason: x\nSubject: urgent\r\n\x1b[2J\u{9b}1m\x00\x7f";
        let plain = t.render(&v, Escape::None).unwrap();
        assert_eq!(plain, format!("Subject: atlassian/ci-bot\n{want}\n"));
        assert_eq!(plain.lines().count(), 2);
        let html = t.render(&v, Escape::Html).unwrap();
        assert!(html.contains(want), "{html}");
        // The template's own line breaks stay.
        let t = Template::parse("a\n{{#each sinks}}{{sink}}\n{{/each}}").unwrap();
        assert_eq!(t.render(&v, Escape::None).unwrap(), "a\nvault\nfile<1>\n");
    }

    #[test]
    fn if_else_and_each() {
        assert_eq!(text("{{#if yes}}Y{{else}}N{{/if}}"), "Y");
        assert_eq!(text("{{#if no}}Y{{else}}N{{/if}}"), "N");
        assert_eq!(text("{{#if no}}Y{{/if}}."), ".");
        assert_eq!(
            text("{{#if sinks}}some{{/if}}{{#if none}}none{{/if}}"),
            "some"
        );
        assert_eq!(
            text("{{#each sinks}}[{{sink}} of {{slot}}]{{/each}}"),
            "[vault of atlassian/ci-bot][file<1> of atlassian/ci-bot]"
        );
        assert_eq!(text("{{#each none}}x{{/each}}"), "");
    }

    #[test]
    fn tags_alone_on_a_line_take_the_line() {
        let src = "{{! a comment }}\nSubject: {{slot}}\n\n{{#if yes}}\n  yes\n{{else}}\n  no\n{{/if}}\n{{#each sinks}}\n  - {{sink}}\n{{/each}}\nend\n";
        assert_eq!(
            text(src),
            "Subject: atlassian/ci-bot\n\n  yes\n  - vault\n  - file<1>\nend\n"
        );
        // Inline tags keep their line.
        assert_eq!(text("a {{#if yes}}b{{/if}}\nc"), "a b\nc");
        // A block tag at the very end, with no newline after it.
        assert_eq!(text("x\n{{#if yes}}\ny\n{{/if}}"), "x\ny\n");
    }

    #[test]
    fn unknown_names_are_errors_in_every_branch() {
        let t = Template::parse("{{#if yes}}ok{{else}}{{slto}}{{/if}}").unwrap();
        let e = t.render(&vars(), Escape::None).unwrap_err();
        assert!(e.starts_with("line 1: unknown variable \"slto\""), "{e}");
        assert!(e.contains("slot"), "{e}");
        let t = Template::parse("{{#each none}}{{snk}}{{/each}}").unwrap();
        assert!(t.render(&vars(), Escape::None).is_err());
        let e = Template::parse("{{sinks}}")
            .unwrap()
            .render(&vars(), Escape::None)
            .unwrap_err();
        assert!(e.contains("is a list"), "{e}");
        let e = Template::parse("{{#each slot}}{{/each}}")
            .unwrap()
            .render(&vars(), Escape::None)
            .unwrap_err();
        assert!(e.contains("not a list"), "{e}");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let cases = [
            ("a\n{{#if yes}}", "line 2: {{#if yes}} is never closed"),
            ("a\nb {{slot", "line 2: {{ without a closing }}"),
            ("{{/if}}", "line 1: {{/if}} without {{#if}}"),
            ("{{#each sinks}}{{/if}}", "line 1: {{/if}} without"),
            ("{{else}}", "line 1: {{else}} outside"),
            ("\n\n{{> details}}", "line 3: unknown tag {{> details}}"),
            (
                "{{two words}}",
                "line 1: \"two words\" is not a variable name",
            ),
        ];
        for (src, want) in cases {
            let e = Template::parse(src).unwrap_err();
            assert!(e.starts_with(want), "{src:?}: {e}");
        }
    }
}

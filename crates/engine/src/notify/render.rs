//! The variables of a message ([`Vars`]) and how keyrot renders its
//! templates with them: Jinja, by minijinja, set up so that
//!
//! - `{{ name }}` writes a variable with its control characters shown
//!   escaped ([`push_escaped`]), and HTML-escaped too in `.html` templates
//!   ([`Escape::Html`]; plain text and subjects get no markup escaping);
//! - a name a message does not have is an error (strict undefined), and
//!   every top-level name a template reads is checked against the
//!   message's variables before rendering, in every branch: a misspelt
//!   name is an error even in a branch this message does not take;
//! - a block tag or comment alone on its line takes the whole line with
//!   it (`trim_blocks`, `lstrip_blocks`), and a final newline stays;
//! - a template still written in keyrot's former syntax (`{{#if x}}`,
//!   `{{#each}}`, `{{! }}`) is refused with what to write instead.
//!
//! Flags are the text `yes` or empty, so `{% if flag %}` reads them; a list
//! is a sequence of rows whose fields are `row.field`. Without minijinja's
//! `multi_template` feature, a template cannot include or import files.

use std::collections::{BTreeMap, BTreeSet};

use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};

/// One row of a list: its fields by name.
pub type Row = BTreeMap<&'static str, String>;

/// A value a template can refer to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// Text; empty counts as false in `{% if %}`.
    Text(String),
    /// Rows for `{% for row in list %}`; every row has exactly `fields`.
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

    /// Sets a flag: `"yes"` when true, empty (false in `{% if %}`) when not.
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
/// see [`keyrot_core::escape`]): every variable is one line, and a reason or a
/// key name from outside must not add lines to a message (a forged
/// paragraph, a second `Subject:`) or drive the reader's terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escape {
    /// No markup escaping (plain text, subjects).
    None,
    /// `&`, `<`, `>`, `"` and `'` as HTML entities.
    Html,
}

/// A template whose source parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    /// The Jinja source.
    source: String,
}

impl Template {
    /// Checks that `src` parses; errors name the line (`line 3: ...`).
    pub fn parse(src: &str) -> Result<Template, String> {
        refuse_old_syntax(src)?;
        environment(Escape::None)?
            .template_from_str(src)
            .map_err(describe)?;
        Ok(Template {
            source: src.to_string(),
        })
    }

    /// Checks every top-level name against `vars` (in every branch), then
    /// renders.
    pub fn render(&self, vars: &Vars, escape: Escape) -> Result<String, String> {
        let env = environment(escape)?;
        let template = env.template_from_str(&self.source).map_err(describe)?;
        let mut unknown: Vec<String> = template
            .undeclared_variables(false)
            .into_iter()
            .filter(|n| vars.get(n).is_none() && !env.globals().any(|(g, _)| g == n))
            .collect();
        unknown.sort();
        if let Some(name) = unknown.first() {
            let known: Vec<&str> = vars.iter().map(|(k, _)| k).collect();
            return Err(format!(
                "line {}: unknown variable {name:?}; this template knows {}",
                line_of(&self.source, name),
                known.join(", ")
            ));
        }
        template.render(context(vars)).map_err(describe)
    }
}

/// The environment every template renders in (see the module doc).
fn environment<'s>(escape: Escape) -> Result<Environment<'s>, String> {
    let mut env = Environment::new();
    let syntax = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(true)
        .build()
        .map_err(describe)?;
    env.set_syntax(syntax);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(move |_| match escape {
        Escape::None => AutoEscape::None,
        Escape::Html => AutoEscape::Html,
    });
    env.set_formatter(|out, state, value| {
        let escape = if value.is_safe() || *state.auto_escape() == AutoEscape::None {
            Escape::None
        } else {
            Escape::Html
        };
        let mut text = String::new();
        push_escaped(&mut text, &value.to_string(), escape);
        out.write_str(&text).map_err(minijinja::Error::from)
    });
    Ok(env)
}

/// The variables as the template's context: text as strings, lists as
/// sequences of rows (maps of field to text).
fn context(vars: &Vars) -> minijinja::Value {
    let map: BTreeMap<&str, minijinja::Value> = vars
        .iter()
        .map(|(name, value)| {
            let value = match value {
                Value::Text(t) => minijinja::Value::from(t.as_str()),
                Value::List { rows, .. } => rows
                    .iter()
                    .map(|r| minijinja::Value::from(r.clone()))
                    .collect(),
            };
            (name, value)
        })
        .collect();
    minijinja::Value::from(map)
}

/// A minijinja error as keyrot reports it: `line 3: syntax error: ...`.
fn describe(e: minijinja::Error) -> String {
    let what = match (e.kind(), e.detail()) {
        (ErrorKind::UndefinedError, _) => {
            "undefined value: a name or row field this message does not have".to_string()
        }
        (kind, Some(detail)) => format!("{kind}: {detail}"),
        (kind, None) => kind.to_string(),
    };
    match e.line() {
        Some(line) => format!("line {line}: {what}"),
        None => what,
    }
}

/// The line of the first tag in `src` that names `name` (1 when none
/// does), for an error about that name.
fn line_of(src: &str, name: &str) -> usize {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut offset = 0;
    while let Some(start) = src[offset..].find('{').map(|i| offset + i) {
        let close = match src.get(start + 1..start + 2) {
            Some("{") => "}}",
            Some("%") => "%}",
            _ => {
                offset = start + 1;
                continue;
            }
        };
        let body_start = start + 2;
        let end = src[body_start..]
            .find(close)
            .map_or(src.len(), |i| body_start + i);
        let body = &src[body_start..end];
        let named = body.match_indices(name).any(|(at, _)| {
            !body[..at].ends_with(ident) && !body[at + name.len()..].starts_with(ident)
        });
        if named {
            return src[..start].matches('\n').count() + 1;
        }
        offset = end;
    }
    1
}

/// Refuses a template in keyrot's former syntax, naming the first such
/// tag's line, what to write instead, and how many more there are.
fn refuse_old_syntax(src: &str) -> Result<(), String> {
    let mut found = src.match_indices("{{").filter_map(|(at, _)| {
        let rest = &src[at + 2..];
        let body = rest[..rest.find("}}").unwrap_or(rest.len())].trim();
        let word = |p: &str| body.strip_prefix(p).map(str::trim);
        let instead = if let Some(name) = word("#if") {
            format!("{{% if {name} %}}")
        } else if let Some(list) = word("#each") {
            format!("{{% for row in {list} %}} (and {{{{ row.FIELD }}}} for its fields)")
        } else if let Some(text) = word("!") {
            format!("{{# {text} #}}")
        } else {
            match body {
                "else" => "{% else %}".to_string(),
                "/if" => "{% endif %}".to_string(),
                "/each" => "{% endfor %}".to_string(),
                _ => return None,
            }
        };
        Some((at, body, instead))
    });
    let Some((at, body, instead)) = found.next() else {
        return Ok(());
    };
    let more = match found.count() {
        0 => String::new(),
        n => format!("; {n} more such tag(s) follow"),
    };
    Err(format!(
        "line {}: {{{{{body}}}}} is keyrot's former template syntax; templates are Jinja \
         now: write {instead}{more} (see \"The template language\" in docs/notifications.md)",
        src[..at].matches('\n').count() + 1
    ))
}

/// Appends `text`, escaped as `escape` says.
pub fn push_escaped(out: &mut String, text: &str, escape: Escape) {
    let text = keyrot_core::escape::controls(text);
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
        let t = Template::parse("<p>{{ reason }}</p>").unwrap();
        assert_eq!(
            t.render(&vars(), Escape::Html).unwrap(),
            "<p>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more</p>"
        );
        assert_eq!(
            t.render(&vars(), Escape::None).unwrap(),
            "<p><script>alert('x')</script> & more</p>"
        );
        // A value marked safe by a filter is not escaped twice.
        let t = Template::parse("{{ slot|e }}").unwrap();
        assert_eq!(
            t.render(&vars(), Escape::Html).unwrap(),
            "atlassian&#x2f;ci-bot"
        );
    }

    #[test]
    fn control_characters_in_values_are_shown_not_obeyed() {
        let mut v = vars();
        v.set("reason", "x\nSubject: urgent\r\n\x1b[2J\u{9b}1m\x00\x7f");
        let t = Template::parse("Subject: {{ slot }}\nreason: {{ reason }}\n").unwrap();
        let want = r"reason: x\nSubject: urgent\r\n\x1b[2J\u{9b}1m\x00\x7f";
        let plain = t.render(&v, Escape::None).unwrap();
        assert_eq!(plain, format!("Subject: atlassian/ci-bot\n{want}\n"));
        assert_eq!(plain.lines().count(), 2);
        let html = t.render(&v, Escape::Html).unwrap();
        assert!(html.contains(want), "{html}");
        // Whatever a value went through: a filter, a literal, a safe mark.
        let t = Template::parse(
            "{{ reason|upper }}|{{ \"a\\nb\" }}|{{ reason|safe }}|{{ reason ~ \"\\r\" }}",
        )
        .unwrap();
        for escape in [Escape::None, Escape::Html] {
            let out = t.render(&v, escape).unwrap();
            assert!(!out.chars().any(keyrot_core::escape::is_control), "{out:?}");
        }
        // The template's own line breaks stay.
        let t = Template::parse("a\n{% for row in sinks %}{{ row.sink }}\n{% endfor %}").unwrap();
        assert_eq!(t.render(&v, Escape::None).unwrap(), "a\nvault\nfile<1>\n");
    }

    #[test]
    fn if_else_and_for() {
        assert_eq!(text("{% if yes %}Y{% else %}N{% endif %}"), "Y");
        assert_eq!(text("{% if no %}Y{% else %}N{% endif %}"), "N");
        assert_eq!(text("{% if no %}Y{% endif %}."), ".");
        assert_eq!(text("{{ yes }}/{{ no }}"), "yes/");
        assert_eq!(
            text("{% if sinks %}some{% endif %}{% if none %}none{% endif %}"),
            "some"
        );
        assert_eq!(
            text("{% for row in sinks %}[{{ row.sink }} of {{ slot }}]{% endfor %}"),
            "[vault of atlassian/ci-bot][file<1> of atlassian/ci-bot]"
        );
        assert_eq!(text("{% for row in none %}x{% endfor %}"), "");
        assert_eq!(text("{{ no or \"never\" }}"), "never");
    }

    #[test]
    fn tags_alone_on_a_line_take_the_line() {
        let src = "{# a comment #}\nSubject: {{ slot }}\n\n{% if yes %}\n  yes\n{% else %}\n  no\n{% endif %}\n  {% for row in sinks %}\n  - {{ row.sink }}\n{% endfor %}\nend\n";
        assert_eq!(
            text(src),
            "Subject: atlassian/ci-bot\n\n  yes\n  - vault\n  - file<1>\nend\n"
        );
        // Inline tags keep their line; at its end, `+%}` keeps the newline.
        assert_eq!(text("a {% if yes %}b{% endif %}c\nd"), "a bc\nd");
        assert_eq!(text("a {% if yes %}b{% endif +%}\nc"), "a b\nc");
        // A block tag at the very end, with no newline after it.
        assert_eq!(text("x\n{% if yes %}\ny\n{% endif %}"), "x\ny\n");
    }

    #[test]
    fn unknown_names_are_errors_in_every_branch() {
        let t = Template::parse("{% if yes %}ok\n{% else %}\n{{ slto }}{% endif %}").unwrap();
        let e = t.render(&vars(), Escape::None).unwrap_err();
        assert!(e.starts_with("line 3: unknown variable \"slto\""), "{e}");
        assert!(e.contains("slot"), "{e}");
        // A row's fields: when a row is rendered.
        let t = Template::parse("{% for row in sinks %}\n{{ row.snk }}{% endfor %}").unwrap();
        let e = t.render(&vars(), Escape::None).unwrap_err();
        assert!(e.starts_with("line 2: undefined value"), "{e}");
        // Functions and the loop's own names are not variables.
        assert_eq!(
            text("{% for row in sinks %}{{ loop.index }}{% endfor %}{{ range(2)|length }}"),
            "122"
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let cases = [
            ("a\n{% if yes %}", "line 2: syntax error"),
            ("a\nb {{ slot", "line 2: syntax error"),
            ("{% endif %}", "line 1: syntax error"),
            ("{% include \"/etc/passwd\" %}", "line 1: syntax error"),
        ];
        for (src, want) in cases {
            let e = Template::parse(src).unwrap_err();
            assert!(e.starts_with(want), "{src:?}: {e}");
        }
    }

    #[test]
    fn the_former_syntax_is_refused_with_what_to_write() {
        let cases = [
            (
                "a\n{{#if old_key_id}}x{{/if}}",
                "line 2: {{#if old_key_id}}",
                "{% if old_key_id %}; 1 more such tag(s) follow",
            ),
            ("{{! note }}\n", "line 1: {{! note}}", "{# note #}"),
            (
                "{{#each sinks}}",
                "line 1: {{#each sinks}}",
                "{% for row in sinks %}",
            ),
            ("x {{ else }}", "line 1: {{else}}", "{% else %}"),
            ("\n\n{{/each}}", "line 3: {{/each}}", "{% endfor %}"),
        ];
        for (src, at, instead) in cases {
            let e = Template::parse(src).unwrap_err();
            assert!(e.starts_with(at), "{src:?}: {e}");
            assert!(e.contains(&format!("write {instead}")), "{src:?}: {e}");
            assert!(e.contains("The template language"), "{e}");
        }
        // A variable whose name starts like a former keyword is fine.
        assert!(Template::parse("{{elsewhere}}{{ ifs }}").is_ok());
    }
}

//! The subset of Go's `text/template` that `--format` flags use, evaluated on a JSON value.
//!
//! Docker evaluates templates on Go structs; berth evaluates them on the JSON the daemon sent
//! (for `inspect`) or on a JSON object of display strings (for `ps`), which gives the same
//! text for the paths people write: `{{.State.Status}}`, `{{.NetworkSettings.IPAddress}}`,
//! `{{json .Config}}`, `{{.ID}}\t{{.Names}}`, `{{index .Config.Labels "k"}}`.
//!
//! Supported: text, `{{ pipeline }}` with `{{-`/`-}}` trimming, field paths (`.`, `.A.B`),
//! string literals, the functions `json`, `upper`, `lower`, `title`, `join`, `index`, `len`,
//! `println`, and `|` pipes. Not supported: `range`, `if`, `with`, variables; they fail with
//! a parse error rather than printing something wrong.

use std::fmt::Write as _;

use serde_json::Value;

/// A template error, worded like Go's (`template: :1: function "x" not defined`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError(pub String);

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "template parsing error: {}", self.0)
    }
}

impl std::error::Error for TemplateError {}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Action(Vec<Command>),
}

/// One command of a pipeline: operands, the first of which may name a function.
type Command = Vec<Operand>;

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    /// `.` is the empty path.
    Field(Vec<String>),
    Str(String),
    Func(String),
}

/// A parsed template, reusable for every row.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

impl Template {
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let mut nodes = Vec::new();
        let mut rest = src;
        while let Some(start) = rest.find("{{") {
            let mut text = rest[..start].to_owned();
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| TemplateError("unclosed action".into()))?;
            let mut inner = &after[..end];
            if let Some(s) = inner.strip_prefix('-') {
                if s.starts_with(char::is_whitespace) {
                    text = text.trim_end().to_owned();
                    inner = s;
                }
            }
            let mut trim_right = false;
            if let Some(s) = inner.strip_suffix('-') {
                if s.ends_with(char::is_whitespace) {
                    trim_right = true;
                    inner = s;
                }
            }
            if !text.is_empty() {
                nodes.push(Node::Text(text));
            }
            nodes.push(Node::Action(parse_pipeline(inner)?));
            rest = &after[end + 2..];
            if trim_right {
                rest = rest.trim_start();
            }
        }
        if !rest.is_empty() {
            nodes.push(Node::Text(rest.to_owned()));
        }
        Ok(Template { nodes })
    }

    /// Swaps every action for `f(field name)`: how a `table` format makes its header row
    /// out of the same template text (`{{.ID}}\t{{.Image}}` -> `CONTAINER ID\tIMAGE`).
    pub fn render_header(&self, f: impl Fn(&str) -> String) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            match node {
                Node::Text(t) => out.push_str(t),
                Node::Action(cmds) => {
                    let name = cmds
                        .iter()
                        .flatten()
                        .find_map(|op| match op {
                            Operand::Field(p) => p.last().cloned(),
                            _ => None,
                        })
                        .unwrap_or_default();
                    out.push_str(&f(&name));
                }
            }
        }
        out
    }

    pub fn render(&self, data: &Value) -> Result<String, TemplateError> {
        let mut out = String::new();
        for node in &self.nodes {
            match node {
                Node::Text(t) => out.push_str(t),
                Node::Action(cmds) => {
                    let v = eval_pipeline(cmds, data)?;
                    out.push_str(&print_value(&v));
                }
            }
        }
        Ok(out)
    }
}

fn parse_pipeline(src: &str) -> Result<Vec<Command>, TemplateError> {
    let mut commands = vec![Vec::new()];
    let mut chars = src.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() || c == '(' || c == ')' {
            chars.next();
        } else if c == '|' {
            chars.next();
            commands.push(Vec::new());
        } else if c == '"' {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    None => return Err(TemplateError("unterminated quoted string".into())),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('n') => s.push('\n'),
                        Some('t') => s.push('\t'),
                        Some(o) => s.push(o),
                        None => return Err(TemplateError("unterminated quoted string".into())),
                    },
                    Some(o) => s.push(o),
                }
            }
            push_operand(&mut commands, Operand::Str(s));
        } else {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '|' || c == '(' || c == ')' || c == '"' {
                    break;
                }
                word.push(c);
                chars.next();
            }
            let op = if word == "." {
                Operand::Field(Vec::new())
            } else if let Some(path) = word.strip_prefix('.') {
                Operand::Field(path.split('.').map(str::to_owned).collect())
            } else if FUNCS.contains(&word.as_str()) {
                Operand::Func(word)
            } else if [
                "range", "if", "with", "end", "else", "define", "template", "block",
            ]
            .contains(&word.as_str())
            {
                return Err(TemplateError(format!(
                    "{{{{{word}}}}} is not supported by berth"
                )));
            } else {
                return Err(TemplateError(format!("function \"{word}\" not defined")));
            };
            push_operand(&mut commands, op);
        }
    }
    if commands.iter().any(Vec::is_empty) {
        return Err(TemplateError("missing value for command".into()));
    }
    Ok(commands)
}

fn push_operand(commands: &mut [Command], op: Operand) {
    if let Some(last) = commands.last_mut() {
        last.push(op);
    }
}

const FUNCS: &[&str] = &[
    "json", "upper", "lower", "title", "join", "index", "len", "println",
];

fn eval_pipeline(cmds: &[Command], data: &Value) -> Result<Value, TemplateError> {
    let mut prev: Option<Value> = None;
    for cmd in cmds {
        prev = Some(eval_command(cmd, data, prev.take())?);
    }
    Ok(prev.unwrap_or(Value::Null))
}

fn eval_command(
    cmd: &[Operand],
    data: &Value,
    piped: Option<Value>,
) -> Result<Value, TemplateError> {
    let Some(first) = cmd.first() else {
        return Err(TemplateError("empty command".into()));
    };
    let operand = |op: &Operand| -> Result<Value, TemplateError> {
        match op {
            Operand::Field(path) => lookup(data, path),
            Operand::Str(s) => Ok(Value::String(s.clone())),
            Operand::Func(f) => Err(TemplateError(format!("{f} is not a value"))),
        }
    };
    let Operand::Func(name) = first else {
        if cmd.len() > 1 || piped.is_some() {
            return Err(TemplateError("can't give argument to non-function".into()));
        }
        return operand(first);
    };
    let mut args = cmd[1..]
        .iter()
        .map(operand)
        .collect::<Result<Vec<_>, _>>()?;
    args.extend(piped);
    let arity = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(TemplateError(format!(
                "wrong number of args for {name}: want {n} got {}",
                args.len()
            )))
        }
    };
    match name.as_str() {
        "json" => {
            arity(1)?;
            let s = serde_json::to_string(&args[0]).map_err(|e| TemplateError(e.to_string()))?;
            Ok(Value::String(s))
        }
        "upper" => {
            arity(1)?;
            Ok(Value::String(print_value(&args[0]).to_uppercase()))
        }
        "lower" => {
            arity(1)?;
            Ok(Value::String(print_value(&args[0]).to_lowercase()))
        }
        "title" => {
            arity(1)?;
            let s = print_value(&args[0]);
            let mut c = s.chars();
            Ok(Value::String(match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect(),
                None => String::new(),
            }))
        }
        "join" => {
            arity(2)?;
            let sep = print_value(&args[1]);
            match &args[0] {
                Value::Array(items) => Ok(Value::String(
                    items.iter().map(print_value).collect::<Vec<_>>().join(&sep),
                )),
                other => Ok(Value::String(print_value(other))),
            }
        }
        "index" => {
            if args.len() < 2 {
                return Err(TemplateError("wrong number of args for index".into()));
            }
            let mut v = args[0].clone();
            for key in &args[1..] {
                v = match (&v, key) {
                    (Value::Object(m), Value::String(k)) => {
                        m.get(k).cloned().unwrap_or(Value::Null)
                    }
                    (Value::Array(a), k) => {
                        let i: usize = print_value(k).parse().map_err(|_| {
                            TemplateError("cannot index slice with a string".into())
                        })?;
                        a.get(i)
                            .cloned()
                            .ok_or_else(|| TemplateError(format!("index out of range: {i}")))?
                    }
                    (Value::Null, _) => Value::Null,
                    _ => return Err(TemplateError("can't index item".into())),
                };
            }
            Ok(v)
        }
        "len" => {
            arity(1)?;
            let n = match &args[0] {
                Value::Array(a) => a.len(),
                Value::Object(m) => m.len(),
                Value::String(s) => s.len(),
                Value::Null => 0,
                _ => return Err(TemplateError("len of non-collection".into())),
            };
            Ok(Value::from(n))
        }
        "println" => Ok(Value::String(
            args.iter().map(print_value).collect::<Vec<_>>().join(" ") + "\n",
        )),
        other => Err(TemplateError(format!("function \"{other}\" not defined"))),
    }
}

fn lookup(data: &Value, path: &[String]) -> Result<Value, TemplateError> {
    let mut v = data;
    for key in path {
        v = match v {
            Value::Object(m) => match m.get(key) {
                Some(x) => x,
                // Go prints a missing map key as `<no value>`.
                None => return Ok(Value::String("<no value>".into())),
            },
            Value::Null => return Ok(Value::Null),
            other => {
                return Err(TemplateError(format!(
                    "can't evaluate field {key} in type {}",
                    type_name(other)
                )))
            }
        };
    }
    Ok(v.clone())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "slice",
        Value::Object(_) => "map",
    }
}

/// Go's `fmt.Print` of the value: strings bare, `[a b]` for slices, `map[k:v]` for maps.
pub fn print_value(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(print_value).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(m) => {
            let mut out = String::from("map[");
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                let _ = write!(out, "{k}:{}", print_value(v));
            }
            out.push(']');
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(t: &str, v: &Value) -> String {
        Template::parse(t)
            .expect("parses")
            .render(v)
            .expect("renders")
    }

    #[test]
    fn dotted_paths() {
        let v = json!({"State": {"Status": "running", "Pid": 42},
                       "NetworkSettings": {"IPAddress": "172.17.0.2"}});
        assert_eq!(render("{{.State.Status}}", &v), "running");
        assert_eq!(render("pid={{ .State.Pid }}!", &v), "pid=42!");
        assert_eq!(render("{{.NetworkSettings.IPAddress}}", &v), "172.17.0.2");
        assert_eq!(render("{{.Nope}}", &v), "<no value>");
    }

    #[test]
    fn json_and_functions() {
        let v = json!({"Config": {"Env": ["A=1", "B=2"], "Labels": {"k": "v"}}, "Name": "web"});
        assert_eq!(render("{{json .Config.Env}}", &v), r#"["A=1","B=2"]"#);
        assert_eq!(render("{{json .Config.Labels}}", &v), r#"{"k":"v"}"#);
        assert_eq!(render("{{join .Config.Env \",\"}}", &v), "A=1,B=2");
        assert_eq!(render("{{index .Config.Labels \"k\"}}", &v), "v");
        assert_eq!(render("{{.Name | upper}}", &v), "WEB");
        assert_eq!(render("{{len .Config.Env}}", &v), "2");
        assert_eq!(render("{{.Config.Env}}", &v), "[A=1 B=2]");
        assert_eq!(render("{{.Config.Labels}}", &v), "map[k:v]");
        assert_eq!(render("{{json .}}", &json!({"a": 1})), r#"{"a":1}"#);
    }

    #[test]
    fn trimming_and_escapes() {
        let v = json!({"ID": "abc", "Names": "web"});
        assert_eq!(render("{{.ID}}\t{{.Names}}", &v), "abc\tweb");
        assert_eq!(render("a  {{- .ID -}}  b", &v), "aabcb");
    }

    #[test]
    fn errors_are_reported_not_printed() {
        assert!(Template::parse("{{.ID").is_err());
        assert!(Template::parse("{{nosuch .ID}}").is_err());
        assert!(Template::parse("{{range .X}}{{end}}").is_err());
        let t = Template::parse("{{.A.B}}").expect("parses");
        assert!(t.render(&json!({"A": "str"})).is_err());
    }

    #[test]
    fn header_from_fields() {
        let t = Template::parse("{{.ID}}\t{{.Image}}").expect("parses");
        assert_eq!(t.render_header(|f| f.to_uppercase()), "ID\tIMAGE");
    }
}

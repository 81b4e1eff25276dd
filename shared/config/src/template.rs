//! frp's config templating: every file goes through Go's `text/template`
//! with `.Envs` (the environment) and two functions, `parseNumberRange` and
//! `parseNumberRangePair`, so one block can expand into many proxies.
//!
//! This is a small, strict engine for the part of Go's templates frp
//! documents and people use: `{{ .Envs.NAME }}`, `{{- ... -}}` trimming,
//! comments, `range` (with `$i, $v :=`), `if`/`else`, variables and the
//! functions `parseNumberRange`, `parseNumberRangePair`, `index`, `eq`,
//! `ne`, `not`, `and`, `or`, `len`, `print`. Anything else is an error
//! naming its line, never silently printed. No crate implements Go
//! templates faithfully and is maintained (gtmpl has had no release since
//! 2021), and the subset is small.
//!
//! One difference on purpose: printing an environment variable that is not
//! set is an error (Go prints `<no value>` into the config).

use std::collections::HashMap;

/// Most numbers one range may expand to (every port there is).
const MAX_RANGE: usize = 65536;
/// Most bytes a rendered file may have.
const MAX_OUTPUT: usize = 16 << 20;
/// Most range iterations of one rendering (nested ranges multiply).
const MAX_STEPS: usize = 1 << 20;
/// Deepest nesting of `if` and `range` (the parser and the renderer
/// recurse per level; a file can arrive over frpc's admin API).
const MAX_NESTING: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// 1-based line of the template.
    pub line: u32,
    pub message: String,
}

/// The text a template renders to, and for each of its lines the line of
/// the template it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    pub lines: Vec<u32>,
}

/// Renders `text` with `envs`; text without `{{` comes back unchanged.
pub fn render(text: &str, envs: &HashMap<String, String>) -> Result<Rendered, TemplateError> {
    if !text.contains("{{") {
        let lines = (1..=text.lines().count().max(1) as u32).collect();
        return Ok(Rendered {
            text: text.to_owned(),
            lines,
        });
    }
    let tokens = lex(text)?;
    check_nesting(&tokens)?;
    let mut pos = 0;
    let body = parse_block(&tokens, &mut pos, None)?;
    let mut out = Out::default();
    let mut scope = Scope {
        envs,
        vars: vec![HashMap::new()],
        dot: Val::Root,
    };
    exec(&body, &mut scope, &mut out)?;
    Ok(Rendered {
        text: out.text,
        lines: out.lines,
    })
}

// ---- lexing ---------------------------------------------------------------

#[derive(Debug)]
enum Token {
    /// Literal text and the line it starts on.
    Text(String, u32),
    /// An action's inside and its line.
    Action(String, u32),
}

fn lex(text: &str) -> Result<Vec<Token>, TemplateError> {
    let mut tokens = Vec::new();
    let mut rest = text;
    let mut line = 1u32;
    let mut trim_next = false;
    while !rest.is_empty() {
        let Some(open) = rest.find("{{") else {
            push_text(&mut tokens, rest, line, trim_next, false);
            break;
        };
        let action_line = line + count_lines(&rest[..open]);
        let after = &rest[open + 2..];
        let trim_before =
            after.starts_with("- ") || after.starts_with("-\t") || after.starts_with("-\n");
        push_text(&mut tokens, &rest[..open], line, trim_next, trim_before);
        let Some(close) = after.find("}}") else {
            return Err(TemplateError {
                line: action_line,
                message: "`{{` without a closing `}}`".into(),
            });
        };
        let mut inside = &after[..close];
        if trim_before {
            inside = &inside[1..];
        }
        trim_next = inside.ends_with(" -") || inside.ends_with("\t-") || inside.ends_with("\n-");
        if trim_next {
            inside = &inside[..inside.len() - 1];
        }
        let inside = inside.trim();
        if !(inside.starts_with("/*") && inside.ends_with("*/")) {
            tokens.push(Token::Action(inside.to_owned(), action_line));
        }
        line = action_line + count_lines(&after[..close + 2]);
        rest = &after[close + 2..];
    }
    Ok(tokens)
}

fn check_nesting(tokens: &[Token]) -> Result<(), TemplateError> {
    let mut depth = 0usize;
    for t in tokens {
        let Token::Action(a, line) = t else { continue };
        match a.split_whitespace().next() {
            Some("if" | "range") => depth += 1,
            Some("end") => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth > MAX_NESTING {
            return err(*line, format!("blocks nested deeper than {MAX_NESTING}"));
        }
    }
    Ok(())
}

fn count_lines(s: &str) -> u32 {
    s.matches('\n').count() as u32
}

/// Text between actions, trimmed as the markers around it ask.
fn push_text(tokens: &mut Vec<Token>, text: &str, mut line: u32, trim_start: bool, trim_end: bool) {
    let mut t = text;
    if trim_start {
        let trimmed = t.trim_start();
        line += count_lines(&t[..t.len() - trimmed.len()]);
        t = trimmed;
    }
    if trim_end {
        t = t.trim_end();
    }
    if !t.is_empty() {
        tokens.push(Token::Text(t.to_owned(), line));
    }
}

// ---- parsing --------------------------------------------------------------

#[derive(Debug)]
enum Item {
    Text(String, u32),
    Print(Expr, u32),
    Assign(String, Expr, u32),
    If(Vec<(Expr, Vec<Item>)>, Vec<Item>, u32),
    Range {
        vars: Vec<String>,
        over: Expr,
        body: Vec<Item>,
        otherwise: Vec<Item>,
        line: u32,
    },
}

#[derive(Debug, Clone)]
enum Expr {
    Str(String),
    Int(i64),
    /// `.`, `.Envs.X`, `$v.First`: a start and field names.
    Path(Start, Vec<String>),
    Call(String, Vec<Expr>),
}

#[derive(Debug, Clone)]
enum Start {
    Dot,
    Root,
    Var(String),
}

/// How a block ended: `end`, or `else` (with what follows it).
enum End {
    End,
    Else(String),
}

fn err<T>(line: u32, message: impl Into<String>) -> Result<T, TemplateError> {
    Err(TemplateError {
        line,
        message: message.into(),
    })
}

/// Items up to the `end`/`else` that closes `opened` (None: the file).
fn parse_block(
    tokens: &[Token],
    pos: &mut usize,
    opened: Option<(&str, u32)>,
) -> Result<Vec<Item>, TemplateError> {
    parse_until(tokens, pos, opened).and_then(|(items, end)| match (end, opened) {
        (None, None) => Ok(items),
        (Some(End::End), Some(_)) => Ok(items),
        (Some(End::Else(_)), Some((what, line))) => {
            err(line, format!("`else` is not allowed in this {what}"))
        }
        (_, Some((what, line))) => err(line, format!("{what} without `end`")),
        (Some(_), None) => err(0, "unreachable"),
    })
}

fn parse_until(
    tokens: &[Token],
    pos: &mut usize,
    opened: Option<(&str, u32)>,
) -> Result<(Vec<Item>, Option<End>), TemplateError> {
    let mut items = Vec::new();
    while let Some(token) = tokens.get(*pos) {
        *pos += 1;
        let (action, line) = match token {
            Token::Text(t, l) => {
                items.push(Item::Text(t.clone(), *l));
                continue;
            }
            Token::Action(a, l) => (a.as_str(), *l),
        };
        let (word, rest) = action
            .split_once(char::is_whitespace)
            .unwrap_or((action, ""));
        let rest = rest.trim();
        match word {
            "end" if opened.is_some() => return Ok((items, Some(End::End))),
            "else" if opened.is_some() => return Ok((items, Some(End::Else(rest.to_owned())))),
            "end" | "else" => {
                return err(line, format!("`{word}` without an opening `if` or `range`"))
            }
            "if" => items.push(parse_if(tokens, pos, rest, line)?),
            "range" => items.push(parse_range(tokens, pos, rest, line)?),
            "with" | "define" | "template" | "block" | "break" | "continue" => {
                return err(
                    line,
                    format!("`{word}` is not supported in config templates"),
                )
            }
            _ => items.push(parse_statement(action, line)?),
        }
    }
    Ok((items, None))
}

fn parse_statement(action: &str, line: u32) -> Result<Item, TemplateError> {
    // A `:=` after a quote is inside a string (`{{ "a:=b" }}` prints it).
    let assign = action
        .split_once(":=")
        .filter(|(var, _)| !var.contains(['"', '`']));
    if let Some((var, expr)) = assign {
        let var = var.trim();
        if !var.starts_with('$') || var.contains(char::is_whitespace) {
            return err(line, format!("cannot assign to {var:?}"));
        }
        return Ok(Item::Assign(
            var.to_owned(),
            parse_expr(expr.trim(), line)?,
            line,
        ));
    }
    Ok(Item::Print(parse_expr(action, line)?, line))
}

fn parse_if(
    tokens: &[Token],
    pos: &mut usize,
    cond: &str,
    line: u32,
) -> Result<Item, TemplateError> {
    let mut arms = Vec::new();
    let mut cond = parse_expr(cond, line)?;
    loop {
        let (body, end) = parse_until(tokens, pos, Some(("if", line)))?;
        arms.push((cond, body));
        match end {
            Some(End::End) => return Ok(Item::If(arms, Vec::new(), line)),
            Some(End::Else(rest)) if rest.starts_with("if ") => {
                cond = parse_expr(rest[3..].trim(), line)?
            }
            Some(End::Else(_)) => {
                let otherwise = parse_block(tokens, pos, Some(("if", line)))?;
                return Ok(Item::If(arms, otherwise, line));
            }
            None => return err(line, "`if` without `end`"),
        }
    }
}

fn parse_range(
    tokens: &[Token],
    pos: &mut usize,
    spec: &str,
    line: u32,
) -> Result<Item, TemplateError> {
    let assign = spec
        .split_once(":=")
        .filter(|(vars, _)| !vars.contains(['"', '`']));
    let (vars, over) = match assign {
        Some((vars, over)) => {
            let vars: Vec<String> = vars.split(',').map(|v| v.trim().to_owned()).collect();
            if vars.len() > 2 || vars.iter().any(|v| !v.starts_with('$')) {
                return err(
                    line,
                    format!("range variables {spec:?} are not `$v` or `$i, $v`"),
                );
            }
            (vars, over.trim())
        }
        None => (Vec::new(), spec),
    };
    let over = parse_expr(over, line)?;
    let (body, end) = parse_until(tokens, pos, Some(("range", line)))?;
    let otherwise = match end {
        Some(End::End) => Vec::new(),
        Some(End::Else(_)) => parse_block(tokens, pos, Some(("range", line)))?,
        None => return err(line, "`range` without `end`"),
    };
    Ok(Item::Range {
        vars,
        over,
        body,
        otherwise,
        line,
    })
}

/// One command: a value, or a function and its arguments.
fn parse_expr(text: &str, line: u32) -> Result<Expr, TemplateError> {
    let words = split_words(text, line)?;
    let Some((first, args)) = words.split_first() else {
        return err(line, "an empty action");
    };
    let quoted = first.starts_with(['"', '`']);
    if (!quoted && first.contains('|')) || args.iter().any(|a| a == "|") {
        return err(line, "pipelines (`|`) are not supported in config templates; call the function with its arguments");
    }
    if args.is_empty() {
        return parse_operand(first, line);
    }
    if !FUNCTIONS.contains(&first.as_str()) {
        return err(
            line,
            format!(
                "{first:?} is not a function (functions: {})",
                FUNCTIONS.join(", ")
            ),
        );
    }
    let args = args
        .iter()
        .map(|a| parse_operand(a, line))
        .collect::<Result<_, _>>()?;
    Ok(Expr::Call(first.clone(), args))
}

const FUNCTIONS: &[&str] = &[
    "parseNumberRange",
    "parseNumberRangePair",
    "index",
    "eq",
    "ne",
    "not",
    "and",
    "or",
    "len",
    "print",
];

fn parse_operand(word: &str, line: u32) -> Result<Expr, TemplateError> {
    if let Some(s) = word.strip_prefix('"') {
        return Ok(Expr::Str(unquote(s.strip_suffix('"').unwrap_or(s), line)?));
    }
    if let Some(s) = word.strip_prefix('`') {
        return Ok(Expr::Str(s.strip_suffix('`').unwrap_or(s).to_owned()));
    }
    if let Ok(i) = word.parse::<i64>() {
        return Ok(Expr::Int(i));
    }
    let (start, fields) = match word {
        "." => return Ok(Expr::Path(Start::Dot, Vec::new())),
        w if w.starts_with("$.") => (Start::Root, &w[2..]),
        "$" => return Ok(Expr::Path(Start::Root, Vec::new())),
        w if w.starts_with('$') => match w.split_once('.') {
            Some((var, rest)) => (Start::Var(var.to_owned()), rest),
            None => return Ok(Expr::Path(Start::Var(w.to_owned()), Vec::new())),
        },
        w if w.starts_with('.') => (Start::Dot, &w[1..]),
        w if FUNCTIONS.contains(&w) => return Ok(Expr::Call(w.to_owned(), Vec::new())),
        w => return err(line, format!("{w:?} is not a value, variable or function")),
    };
    let fields: Vec<String> = fields.split('.').map(str::to_owned).collect();
    if fields
        .iter()
        .any(|f| f.is_empty() || !f.chars().all(|c| c.is_alphanumeric() || c == '_'))
    {
        return err(line, format!("{word:?} is not a field path"));
    }
    Ok(Expr::Path(start, fields))
}

fn unquote(s: &str, line: u32) -> Result<String, TemplateError> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(c @ ('\\' | '"')) => out.push(c),
            other => return err(line, format!("unknown escape \\{}", other.unwrap_or(' '))),
        }
    }
    Ok(out)
}

/// Words of an action: quoted strings stay whole.
fn split_words(text: &str, line: u32) -> Result<Vec<String>, TemplateError> {
    let mut words = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        if c == '"' || c == '`' {
            word.push(c);
            chars.next();
            let mut closed = false;
            while let Some(d) = chars.next() {
                word.push(d);
                if d == '\\' && c == '"' {
                    if let Some(e) = chars.next() {
                        word.push(e);
                    }
                } else if d == c {
                    closed = true;
                    break;
                }
            }
            if !closed {
                return err(line, "a string without its closing quote");
            }
        } else {
            while let Some(&d) = chars.peek() {
                if d.is_whitespace() {
                    break;
                }
                word.push(d);
                chars.next();
            }
        }
        if word.starts_with('(') {
            return err(
                line,
                "parenthesised expressions are not supported in config templates",
            );
        }
        words.push(word);
    }
    Ok(words)
}

// ---- running --------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Root,
    Envs,
    Str(String),
    Int(i64),
    Bool(bool),
    List(Vec<Val>),
    Pair(i64, i64),
    /// An environment variable that is not set (its name).
    Missing(String),
}

impl Val {
    fn truthy(&self) -> bool {
        match self {
            Val::Str(s) => !s.is_empty(),
            Val::Int(i) => *i != 0,
            Val::Bool(b) => *b,
            Val::List(l) => !l.is_empty(),
            Val::Missing(_) => false,
            Val::Root | Val::Envs | Val::Pair(..) => true,
        }
    }

    fn show(&self, line: u32) -> Result<String, TemplateError> {
        Ok(match self {
            Val::Str(s) => s.clone(),
            Val::Int(i) => i.to_string(),
            Val::Bool(b) => b.to_string(),
            Val::Pair(a, b) => format!("{{{a} {b}}}"),
            Val::List(l) => {
                let items: Result<Vec<_>, _> = l.iter().map(|v| v.show(line)).collect();
                format!("[{}]", items?.join(" "))
            }
            Val::Missing(name) => {
                return err(line, format!("environment variable {name} is not set"))
            }
            Val::Root | Val::Envs => return err(line, "cannot print a whole table"),
        })
    }
}

struct Scope<'a> {
    envs: &'a HashMap<String, String>,
    vars: Vec<HashMap<String, Val>>,
    dot: Val,
}

#[derive(Default)]
struct Out {
    text: String,
    /// Template line of each output line so far.
    lines: Vec<u32>,
    /// Newlines in `text`.
    newlines: usize,
    /// Range iterations so far.
    steps: usize,
}

impl Out {
    /// Appends `s`, which starts at template line `line`; `literal`: its
    /// newlines are the template's own (so later lines move on with them).
    fn push(&mut self, s: &str, line: u32, literal: bool) -> Result<(), TemplateError> {
        if self.text.len() + s.len() > MAX_OUTPUT {
            return err(
                line,
                format!("the rendered file would be over {} MiB", MAX_OUTPUT >> 20),
            );
        }
        let mut here = line;
        for c in s.chars() {
            if self.lines.len() <= self.newlines {
                self.lines.push(here);
            }
            self.text.push(c);
            if c == '\n' {
                self.newlines += 1;
                if literal {
                    here += 1;
                }
            }
        }
        Ok(())
    }
}

fn exec(items: &[Item], scope: &mut Scope<'_>, out: &mut Out) -> Result<(), TemplateError> {
    for item in items {
        match item {
            Item::Text(t, line) => out.push(t, *line, true)?,
            Item::Print(e, line) => {
                let v = eval(e, scope, *line)?;
                out.push(&v.show(*line)?, *line, false)?;
            }
            Item::Assign(var, e, line) => {
                let v = eval(e, scope, *line)?;
                if let Some(top) = scope.vars.last_mut() {
                    top.insert(var.clone(), v);
                }
            }
            Item::If(arms, otherwise, line) => {
                let mut chosen = otherwise;
                for (cond, body) in arms {
                    if eval(cond, scope, *line)?.truthy() {
                        chosen = body;
                        break;
                    }
                }
                scope.vars.push(HashMap::new());
                let r = exec(chosen, scope, out);
                scope.vars.pop();
                r?;
            }
            Item::Range {
                vars,
                over,
                body,
                otherwise,
                line,
            } => {
                run_range(vars, over, body, otherwise, *line, scope, out)?;
            }
        }
    }
    Ok(())
}

fn run_range(
    vars: &[String],
    over: &Expr,
    body: &[Item],
    otherwise: &[Item],
    line: u32,
    scope: &mut Scope<'_>,
    out: &mut Out,
) -> Result<(), TemplateError> {
    let items = match eval(over, scope, line)? {
        Val::List(items) => items,
        Val::Missing(name) => return err(line, format!("environment variable {name} is not set")),
        other => return err(line, format!("cannot range over {other:?}")),
    };
    if items.is_empty() {
        return exec(otherwise, scope, out);
    }
    for (i, item) in items.into_iter().enumerate() {
        out.steps += 1;
        if out.steps > MAX_STEPS {
            return err(
                line,
                format!("ranges run more than {MAX_STEPS} times in all"),
            );
        }
        let mut frame = HashMap::new();
        match vars {
            [v] => {
                frame.insert(v.clone(), item.clone());
            }
            [k, v] => {
                frame.insert(k.clone(), Val::Int(i as i64));
                frame.insert(v.clone(), item.clone());
            }
            _ => {}
        }
        scope.vars.push(frame);
        let dot = std::mem::replace(&mut scope.dot, item);
        let r = exec(body, scope, out);
        scope.dot = dot;
        scope.vars.pop();
        r?;
    }
    Ok(())
}

fn eval(e: &Expr, scope: &Scope<'_>, line: u32) -> Result<Val, TemplateError> {
    match e {
        Expr::Str(s) => Ok(Val::Str(s.clone())),
        Expr::Int(i) => Ok(Val::Int(*i)),
        Expr::Path(start, fields) => {
            let mut v = match start {
                Start::Dot => scope.dot.clone(),
                Start::Root => Val::Root,
                Start::Var(name) => scope
                    .vars
                    .iter()
                    .rev()
                    .find_map(|f| f.get(name))
                    .cloned()
                    .ok_or_else(|| TemplateError {
                        line,
                        message: format!("variable {name} is not defined"),
                    })?,
            };
            for f in fields {
                v = field(v, f, scope, line)?;
            }
            Ok(v)
        }
        Expr::Call(name, args) => {
            let args: Vec<Val> = args
                .iter()
                .map(|a| eval(a, scope, line))
                .collect::<Result<_, _>>()?;
            call(name, &args, scope, line)
        }
    }
}

fn field(v: Val, name: &str, scope: &Scope<'_>, line: u32) -> Result<Val, TemplateError> {
    match (v, name) {
        (Val::Root, "Envs") => Ok(Val::Envs),
        (Val::Envs, var) => Ok(match scope.envs.get(var) {
            Some(s) => Val::Str(s.clone()),
            None => Val::Missing(var.to_owned()),
        }),
        (Val::Pair(a, _), "First") => Ok(Val::Int(a)),
        (Val::Pair(_, b), "Second") => Ok(Val::Int(b)),
        (other, f) => err(line, format!("{f} is not a field of {}", kind(&other))),
    }
}

fn kind(v: &Val) -> &'static str {
    match v {
        Val::Root => "the template's data (only .Envs)",
        Val::Envs => ".Envs",
        Val::Str(_) | Val::Missing(_) => "a string",
        Val::Int(_) => "a number",
        Val::Bool(_) => "a boolean",
        Val::List(_) => "a list",
        Val::Pair(..) => "a pair (fields First, Second)",
    }
}

fn call(name: &str, args: &[Val], scope: &Scope<'_>, line: u32) -> Result<Val, TemplateError> {
    let want = |n: usize| -> Result<(), TemplateError> {
        match args.len() == n {
            true => Ok(()),
            false => err(
                line,
                format!("{name} takes {n} argument(s), not {}", args.len()),
            ),
        }
    };
    match name {
        "parseNumberRange" | "parseNumberRangePair" => {
            want(if name == "parseNumberRange" { 1 } else { 2 })?;
            ranges(args, line)
        }
        "index" => {
            want(2)?;
            match (&args[0], &args[1]) {
                (Val::Envs, Val::Str(k)) => field(Val::Envs, k, scope, line),
                (Val::List(l), Val::Int(i)) => l
                    .get(usize::try_from(*i).unwrap_or(usize::MAX))
                    .cloned()
                    .ok_or_else(|| TemplateError {
                        line,
                        message: format!("index {i} out of range"),
                    }),
                _ => err(line, "index takes .Envs and a name, or a list and a number"),
            }
        }
        "eq" | "ne" => {
            want(2)?;
            let same = match (&args[0], &args[1]) {
                (Val::Missing(_), Val::Str(s)) | (Val::Str(s), Val::Missing(_)) => s.is_empty(),
                (a, b) => a == b,
            };
            Ok(Val::Bool(same == (name == "eq")))
        }
        "not" => {
            want(1)?;
            Ok(Val::Bool(!args[0].truthy()))
        }
        "and" => Ok(args
            .iter()
            .find(|a| !a.truthy())
            .or(args.last())
            .cloned()
            .unwrap_or(Val::Bool(true))),
        "or" => Ok(args
            .iter()
            .find(|a| a.truthy())
            .or(args.last())
            .cloned()
            .unwrap_or(Val::Bool(false))),
        "len" => {
            want(1)?;
            match &args[0] {
                Val::List(l) => Ok(Val::Int(l.len() as i64)),
                Val::Str(s) => Ok(Val::Int(s.len() as i64)),
                other => err(line, format!("len of {}", kind(other))),
            }
        }
        _ => {
            let parts: Vec<String> = args
                .iter()
                .map(|a| a.show(line))
                .collect::<Result<_, _>>()?;
            Ok(Val::Str(parts.concat()))
        }
    }
}

/// `parseNumberRange "a-b,c"` (numbers) or `parseNumberRangePair` (pairs
/// with `.First` and `.Second`).
fn ranges(args: &[Val], line: u32) -> Result<Val, TemplateError> {
    let lists: Vec<Vec<i64>> = args
        .iter()
        .map(|a| numbers(&a.show(line)?, line))
        .collect::<Result<_, _>>()?;
    match lists.as_slice() {
        [one] => Ok(Val::List(one.iter().copied().map(Val::Int).collect())),
        [a, b] if a.len() == b.len() => Ok(Val::List(
            a.iter().zip(b).map(|(x, y)| Val::Pair(*x, *y)).collect(),
        )),
        _ => err(
            line,
            "parseNumberRangePair: the two ranges have different lengths",
        ),
    }
}

/// frp's `ParseRangeNumbers` for other readers (legacy INI `[range:]`).
pub fn number_range(spec: &str) -> Result<Vec<i64>, String> {
    numbers(spec, 0).map_err(|e| e.message)
}

/// frp's `ParseRangeNumbers`: "1000-1005,2000" → 1000..=1005, 2000.
fn numbers(spec: &str, line: u32) -> Result<Vec<i64>, TemplateError> {
    let bad = |why: String| TemplateError {
        line,
        message: format!("range {spec:?}: {why}"),
    };
    let mut out = Vec::new();
    for part in spec.trim().split(',') {
        let ends: Vec<&str> = part.split('-').map(str::trim).collect();
        let parse = |s: &str| s.parse::<i64>().map_err(|e| bad(format!("{s:?}: {e}")));
        let (lo, hi) = match ends.as_slice() {
            [one] => (parse(one)?, parse(one)?),
            [lo, hi] => (parse(lo)?, parse(hi)?),
            _ => return Err(bad(format!("{part:?} is not a number or a-b"))),
        };
        if hi < lo {
            return Err(bad(format!("{hi} is less than {lo}")));
        }
        let count = usize::try_from(hi - lo)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        if out.len().saturating_add(count) > MAX_RANGE {
            return Err(bad(format!("more than {MAX_RANGE} numbers")));
        }
        out.extend(lo..=hi);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envs() -> HashMap<String, String> {
        HashMap::from([
            ("FRP_SERVER".to_owned(), "10.0.0.1".to_owned()),
            ("EMPTY".to_owned(), String::new()),
        ])
    }

    #[test]
    fn envs_and_trimming() {
        let r = render(
            "serverAddr = \"{{ .Envs.FRP_SERVER }}\"\n{{- /* a comment */ -}}\nserverPort = 7000\n",
            &envs(),
        )
        .expect("renders");
        assert_eq!(r.text, "serverAddr = \"10.0.0.1\"serverPort = 7000\n");
        let r = render(
            "a = \"{{ index .Envs \"FRP_SERVER\" }}\"\n{{ if .Envs.NOPE }}x{{ else }}y{{ end }}\n",
            &envs(),
        )
        .expect("renders");
        assert_eq!(r.text, "a = \"10.0.0.1\"\ny\n");
    }

    #[test]
    fn ranges_expand_with_their_lines() {
        let t = "x = 1\n{{- range $_, $v := parseNumberRangePair \"6000-6001,6005\" \"7000-7002\" }}\n[[proxies]]\nlocalPort = {{ $v.First }}\nremotePort = {{ $v.Second }}\n{{- end }}\n";
        let r = render(t, &envs()).expect("renders");
        assert_eq!(
            r.text,
            "x = 1\n[[proxies]]\nlocalPort = 6000\nremotePort = 7000\n[[proxies]]\nlocalPort = 6001\nremotePort = 7001\n[[proxies]]\nlocalPort = 6005\nremotePort = 7002\n"
        );
        assert_eq!(r.lines, [1, 3, 4, 5, 3, 4, 5, 3, 4, 5]);
        let r = render(
            "{{ range parseNumberRange \"1-3\" }}{{ . }},{{ end }}",
            &envs(),
        )
        .expect("dot");
        assert_eq!(r.text, "1,2,3,");
    }

    #[test]
    fn errors_name_the_line() {
        for (t, line, want) in [
            ("a\nb = {{ .Envs.NOPE }}\n", 2, "NOPE is not set"),
            ("a\n\nb = {{ .Envs.X | upper }}\n", 3, "pipelines"),
            ("{{ range parseNumberRange \"1-2\" }}\n", 1, "without `end`"),
            ("a\n{{ parseNumberRange \"5-1\" }}", 2, "less than"),
            (
                "{{ parseNumberRange \"1-100000000\" }}",
                1,
                "more than 65536",
            ),
            ("x\n{{ nope 1 }}", 2, "not a function"),
            ("x\n{{ .Envs.X ", 2, "without a closing"),
            ("{{ end }}", 1, "without an opening"),
            (&"{{ if 1 }}".repeat(33), 1, "nested deeper than 32"),
            (
                "{{ range parseNumberRange \"1-65535\" }}\n{{ range parseNumberRange \"1-65535\" }}{{ end }}{{ end }}",
                1,
                "more than 1048576 times",
            ),
        ] {
            let e = render(t, &envs()).expect_err(t);
            assert_eq!(e.line, line, "{t:?}: {e:?}");
            assert!(e.message.contains(want), "{t:?}: {e:?}");
        }
    }

    #[test]
    fn strings_may_hold_template_syntax() {
        let r = render(
            "{{ \"a:=b\" }} {{ `c:=d` }} {{ $x := \"e:=f\" }}{{ $x }}",
            &envs(),
        )
        .expect("renders");
        assert_eq!(r.text, "a:=b c:=d e:=f");
        let e = render("{{ x := 1 }}", &envs()).expect_err("not a variable");
        assert!(e.message.contains("cannot assign"), "{e:?}");
        let r = render("{{ \"a|b\" }} {{ `|` }} {{ print \"c|d\" }}", &envs()).expect("renders");
        assert_eq!(r.text, "a|b | c|d");
        let e = render("{{ range index .Envs \"X:=Y\" }}{{ end }}", &envs()).expect_err("a string");
        assert!(e.message.contains("X:=Y is not set"), "{e:?}");
    }

    #[test]
    fn text_without_actions_is_unchanged() {
        let r = render("a = 1\nb = 2\n", &envs()).expect("plain");
        assert_eq!(
            (r.text.as_str(), r.lines.as_slice()),
            ("a = 1\nb = 2\n", &[1, 2][..])
        );
    }
}

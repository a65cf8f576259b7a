//! Sluice's jq sandbox (the `sluice:transform/jq` world of `transforms/wit/jq.wit`): a
//! Firehose `MetadataExtractionQuery` compiled with jaq (jaq-core, jaq-std, jaq-json, the
//! versions the server used natively) and run on one record at a time.
//!
//! The host (`sluice_transforms::JqQuery`) runs this component with a fuel budget per record,
//! a memory limit and a bounded stack, so a query that loops, recurses without end or
//! allocates without end traps this instance only. What the sandbox cannot bound — reading the
//! clock, the environment, files or further inputs, writing logs, halting — is refused here,
//! at compile time: those filters are left out of the standard library, and the component
//! needs no import at run time.

use std::cell::RefCell;

use jaq_core::compile::{Filter, Undefined};
use jaq_core::data::JustLut;
use jaq_core::load::{self, Arena, File, Loader};
use jaq_core::native::{run, unary, v, Fun};
use jaq_core::{Compiler, Ctx, Error, Native, ValR, Vars};
use jaq_json::Val;
use jaq_std::ValT as _;

wit_bindgen::generate!({
    path: "../../wit/jq.wit",
    world: "jq",
});

type JqFilter = Filter<Native<JustLut<Val>>>;

thread_local! {
    /// The query of the last successful `compile`.
    static QUERY: RefCell<Option<JqFilter>> = const { RefCell::new(None) };
}

/// Filters and variables a query may not use, and why. The native filters and definitions
/// among them are removed from jaq's standard library; the others are not in it (jq has them,
/// jaq or this sandbox does not), and are listed for a clear message.
const FORBIDDEN: &[(&str, &str)] = &[
    ("env", "it reads the server's environment"),
    ("$ENV", "it reads the server's environment"),
    ("now", "it reads the clock, so a record's keys would change from run to run"),
    ("localtime", "it reads the server's time zone (use gmtime)"),
    ("strflocaltime", "it reads the server's time zone (use strftime)"),
    ("input", "a query sees one record only"),
    ("inputs", "a query sees one record only"),
    ("input_filename", "a query sees one record only"),
    ("input_line_number", "a query sees one record only"),
    ("$__loc__", "a query has no source file"),
    ("$__prog_args", "a query has no arguments"),
    ("debug", "it writes to the server's log"),
    ("debug_empty", "it writes to the server's log"),
    ("stderr", "it writes to the server's standard error"),
    ("stderr_empty", "it writes to the server's standard error"),
    ("halt", "it would stop the server"),
    ("halt_error", "it would stop the server"),
    ("get_search_list", "it reads the server's module search path"),
    ("get_prog_origin", "it reads the server's file system"),
    ("get_jq_origin", "it reads the server's file system"),
    ("modulemeta", "it reads module files"),
];

fn forbidden(name: &str) -> Option<&'static str> {
    FORBIDDEN.iter().find(|(n, _)| *n == name).map(|(_, why)| *why)
}

/// Records nested deeper than this are refused before parsing, with a message (jq 1.7 allows
/// 10,000 levels, serde_json 128). Parsing and walking a record 512 deep fits the stack the
/// host gives; writing one out (`tostring`) does up to about 660.
const MAX_RECORD_DEPTH: usize = 512;

/// At most this many characters of a query or value in a message.
const MAX_QUOTED_CHARS: usize = 200;

fn quoted(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((end, _)) => format!("{}...", &s[..end]),
        None => s.to_owned(),
    }
}

struct Jq;

impl Guest for Jq {
    fn compile(query: String) -> Result<(), String> {
        let filter = compile(&query)?;
        QUERY.with_borrow_mut(|q| *q = Some(filter));
        Ok(())
    }

    fn keys(record: Vec<u8>) -> Result<Vec<(String, String)>, String> {
        QUERY.with_borrow(|q| match q {
            Some(filter) => keys(filter, &record),
            None => Err("no query has been compiled".into()),
        })
    }
}

export!(Jq);

fn compile(query: &str) -> Result<JqFilter, String> {
    let allowed_def = |d: &load::parse::Def<&'static str>| forbidden(d.name).is_none();
    let defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs()).filter(allowed_def);
    let funs = jaq_core::funs()
        .chain(jaq_std::funs().filter(|(name, _, _)| *name != "strptime"))
        .chain(jaq_json::funs())
        .filter(|(name, _, _)| forbidden(name).is_none())
        .chain([strptime()]);
    let arena = Arena::default();
    let prefix = || format!("MetadataExtractionQuery '{}'", quoted(query));
    let modules = Loader::new(defs)
        .load(&arena, File { code: query, path: () })
        .map_err(|errs| format!("{} does not parse as jq: {}", prefix(), load_errors(errs)))?;
    // `import "f" as $x;` binds $x to the contents of a data file, which a query cannot read.
    load::import(&modules, |i| Err(format!("cannot import data from \"{}\": a query reads no files", i.path)))
        .map_err(|errs| format!("{} does not compile: {}", prefix(), load_errors(errs)))?;
    Compiler::default().with_funs(funs).compile(modules).map_err(|errs| {
        let undefined: Vec<String> = errs.into_iter().flat_map(|(_file, e)| e).map(undefined).collect();
        format!("{} does not compile: {}", prefix(), listed(undefined))
    })
}

fn load_errors(errs: load::Errors<&str, ()>) -> String {
    let found = |s: &str| match s.chars().next() {
        None => "the end of the query".to_owned(),
        Some(_) => format!("'{}'", quoted(s.split_whitespace().next().unwrap_or(s))),
    };
    let messages: Vec<String> = errs
        .into_iter()
        .flat_map(|(_file, e)| -> Vec<String> {
            match e {
                load::Error::Io(io) => io
                    .into_iter()
                    .map(|(path, e)| match e.as_str() {
                        "module loading not supported" => {
                            format!("cannot include or import \"{path}\": a query reads no modules")
                        }
                        _ => e,
                    })
                    .collect(),
                load::Error::Lex(lex) => lex
                    .into_iter()
                    .map(|(expect, rest)| {
                        use load::lex::Expect;
                        let what = match expect {
                            Expect::Delim("(") | Expect::Delim("[") | Expect::Delim("{") | Expect::Delim("\"") => {
                                expect.as_str()
                            }
                            Expect::Delim(_) => "closing delimiter",
                            _ => expect.as_str(),
                        };
                        format!("expected {what} before {}", found(rest))
                    })
                    .collect(),
                load::Error::Parse(parse) => parse
                    .into_iter()
                    .map(|(expect, token)| format!("expected {} before {}", expect.as_str(), found(token)))
                    .collect(),
            }
        })
        .collect();
    listed(messages)
}

/// The first few of `messages`, repeats left out.
fn listed(mut messages: Vec<String>) -> String {
    const SHOWN: usize = 5;
    messages.dedup();
    let more = messages.len().saturating_sub(SHOWN);
    messages.truncate(SHOWN);
    match more {
        0 => messages.join("; "),
        n => format!("{}; and {n} more", messages.join("; ")),
    }
}

fn undefined((name, what): (&str, Undefined)) -> String {
    if let Some(why) = forbidden(name) {
        return format!("'{name}' is not allowed: {why}");
    }
    match what {
        Undefined::Filter(arity) => format!("undefined filter '{name}/{arity}'"),
        other => format!("undefined {} '{name}'", other.as_str()),
    }
}

/// jaq-std's `strptime`, except that it reads no time zone database: jiff's default one is
/// loaded on first use from the environment (`TZDIR`) and the file system, which the sandbox
/// does not have. Times with a UTC offset or none (taken as UTC) parse as in jaq; a time zone
/// name (`%Q`) is an error.
fn strptime() -> Fun<JustLut<Val>> {
    run(("strptime", v(1), |cv| unary(cv, |s, fmt| parse_time(&s, &fmt))))
}

fn text(v: &Val) -> Result<&str, Error<Val>> {
    v.as_utf8_bytes().and_then(|b| std::str::from_utf8(b).ok()).ok_or_else(|| Error::typ(v.clone(), "string"))
}

fn parse_time(s: &Val, fmt: &Val) -> ValR<Val> {
    let mut bdt = jiff::fmt::strtime::BrokenDownTime::parse(text(fmt)?, text(s)?).map_err(Error::str)?;
    if (bdt.offset(), bdt.iana_time_zone()) == (None, None) {
        bdt.set_offset(Some(jiff::tz::Offset::UTC));
    }
    let dt: jiff::civil::DateTime = bdt.to_zoned_with(&jiff::tz::TimeZoneDatabase::none()).map_err(Error::str)?.into();
    // jq's "broken down time": year, month (0-11), day, hours, minutes, seconds (with a
    // fraction if any), weekday (0 = Sunday), day of the year (0-365).
    let seconds = match dt.subsec_nanosecond() {
        0 => Val::from(dt.second() as isize),
        ns => Val::from(dt.second() as f64 + ns as f64 / 1e9),
    };
    Ok([
        Val::from(dt.year() as isize),
        Val::from(dt.month() as isize - 1),
        Val::from(dt.day() as isize),
        Val::from(dt.hour() as isize),
        Val::from(dt.minute() as isize),
        seconds,
        Val::from(dt.weekday().to_sunday_zero_offset() as isize),
        Val::from(dt.day_of_year() as isize - 1),
    ]
    .into_iter()
    .collect())
}

/// How deep `json` nests arrays and objects, counting up to `limit + 1` (strings skipped).
fn nesting_depth(json: &[u8], limit: usize) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in json {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
                if deepest > limit {
                    break;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The pairs of an object whose keys are UTF-8 strings and whose values are UTF-8 strings,
/// booleans or numbers JSON can write (numbers as serde_json writes them, as natively); `None`
/// for anything else. What the serde round trip below gives, without it.
fn plain_pairs(map: &jaq_json::Map) -> Option<Vec<(String, String)>> {
    let utf8 = |v: &Val| match v {
        Val::TStr(b) => std::str::from_utf8(b).ok().map(str::to_owned),
        _ => None,
    };
    map.iter()
        .map(|(k, v)| {
            let value = match v {
                Val::TStr(_) => utf8(v)?,
                Val::Bool(b) => b.to_string(),
                Val::Num(_) => serde_json::from_str::<serde_json::Number>(&v.to_string()).ok()?.to_string(),
                _ => return None,
            };
            Some((utf8(k)?, value))
        })
        .collect()
}

/// The partition keys of one record, as `firehose::partition::PartitionQuery::keys` made them
/// natively (same messages).
fn keys(filter: &JqFilter, record: &[u8]) -> Result<Vec<(String, String)>, String> {
    if nesting_depth(record, MAX_RECORD_DEPTH) > MAX_RECORD_DEPTH {
        return Err(format!("the record is not JSON: nested more than {MAX_RECORD_DEPTH} levels deep"));
    }
    let input = jaq_json::read::parse_single(record).map_err(|e| format!("the record is not JSON: {e}"))?;
    let ctx = Ctx::<JustLut<Val>>::new(&filter.lut, Vars::new([]));
    let first = match filter.id.run((ctx, input)).next() {
        None => return Err("the query gave no result".into()),
        Some(Err(e)) => {
            return Err(match e.get_err() {
                Ok(err) => format!("the query failed: {}", quoted(&err.to_string())),
                Err(_) => "the query halted".into(),
            })
        }
        Some(Ok(v)) => v,
    };
    let Val::Obj(map) = &first else {
        return Err(format!("the query result is not a JSON object: {}", quoted(&first.to_string())));
    };
    if let Some(pairs) = plain_pairs(map) {
        return Ok(pairs);
    }
    // Anything else is an error, or an edge case (a key that is not a UTF-8 string, a number
    // JSON cannot write): as natively, serde reads the result back as plain values.
    let value: serde_json::Value =
        serde_json::from_str(&first.to_string()).map_err(|e| format!("the query result is not JSON: {e}"))?;
    let serde_json::Value::Object(map) = value else {
        return Err(format!("the query result is not a JSON object: {}", quoted(&first.to_string())));
    };
    map.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            serde_json::Value::Number(n) => Ok((k, n.to_string())),
            serde_json::Value::Bool(b) => Ok((k, b.to_string())),
            other => {
                Err(format!("partition key '{k}' is {}, not a string, number or boolean", quoted(&other.to_string())))
            }
        })
        .collect()
}

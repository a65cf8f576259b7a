//! The jq sandbox of dynamic partitioning: ordinary queries give the keys jaq gives natively
//! (`firehose::partition`'s semantics and messages), hostile queries and records fail their
//! record only, and what the sandbox cannot bound is refused at compile.

use std::collections::BTreeMap;

use sluice_transforms::{JqLimits, JqQuery, JQ_COMPONENT_WASM};

fn query(q: &str) -> JqQuery {
    JqQuery::compile(q, JqLimits::default()).unwrap_or_else(|e| panic!("{q}: {e}"))
}

fn keys(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

const DONGSI: &[u8] = br#"{"station":"Dongsi","year":2013,"month":3,"PM2.5":4.5,"ok":true}"#;

#[test]
fn ordinary_queries_give_the_keys_jaq_gives() {
    let mut q = query("{station: .station, year: .year}");
    assert_eq!(
        q.keys(br#"{"station":"Dongsi","year":2013}"#).unwrap(),
        keys(&[("station", "Dongsi"), ("year", "2013")])
    );
    assert_eq!(q.keys(DONGSI).unwrap(), keys(&[("station", "Dongsi"), ("year", "2013")]));

    // Numbers as JSON writes them, booleans as true/false, computed keys and values.
    let mut q = query(r#"{pm: ."PM2.5", ok: .ok, month: (.month | tostring), half: (.year / 2), big: 1e3, neg: -0.5}"#);
    assert_eq!(
        q.keys(DONGSI).unwrap(),
        keys(&[("pm", "4.5"), ("ok", "true"), ("month", "3"), ("half", "1006.5"), ("big", "1000.0"), ("neg", "-0.5")])
    );
    let mut q = query(r#"{key: "\(.station)-\(.year)", lower: (.station | ascii_downcase)}"#);
    assert_eq!(q.keys(DONGSI).unwrap(), keys(&[("key", "Dongsi-2013"), ("lower", "dongsi")]));
    // The first output counts.
    let mut q = query("{a: .year}, {a: .month}");
    assert_eq!(q.keys(DONGSI).unwrap(), keys(&[("a", "2013")]));
    // An empty object gives no keys.
    assert_eq!(query("{}").keys(DONGSI).unwrap(), BTreeMap::new());
}

#[test]
fn bad_records_and_results_fail_with_the_native_messages() {
    let mut q = query("{station: .station}");
    let e = q.keys(b"{not json").unwrap_err();
    assert!(e.starts_with("the record is not JSON"), "{e}");
    let e = q.keys(b"{\"a\":1} {\"a\":2}").unwrap_err();
    assert!(e.starts_with("the record is not JSON"), "{e}");
    let e = q.keys(br#"{"station": {"nested": 1}}"#).unwrap_err();
    assert_eq!(e, r#"partition key 'station' is {"nested":1}, not a string, number or boolean"#);
    let e = q.keys(br#"{"station": [1]}"#).unwrap_err();
    assert!(e.contains("not a string, number or boolean"), "{e}");
    let e = q.keys(br#"{"other": 1}"#).unwrap_err();
    assert_eq!(e, "partition key 'station' is null, not a string, number or boolean");

    let e = query(".station").keys(DONGSI).unwrap_err();
    assert_eq!(e, r#"the query result is not a JSON object: "Dongsi""#);
    let e = query("empty").keys(DONGSI).unwrap_err();
    assert_eq!(e, "the query gave no result");
    let e = query(r#"error("no station")"#).keys(DONGSI).unwrap_err();
    assert!(e.starts_with("the query failed:") && e.contains("no station"), "{e}");
    let e = query(".station + 1").keys(DONGSI).unwrap_err();
    assert!(e.starts_with("the query failed:"), "{e}");
    // Still usable after failures.
    assert_eq!(q.keys(DONGSI).unwrap(), keys(&[("station", "Dongsi")]));
}

#[test]
fn queries_that_do_not_parse_or_compile_say_why() {
    let e = JqQuery::compile("{station: .station", JqLimits::default()).unwrap_err();
    assert!(e.contains("does not parse as jq"), "{e}");
    let e = JqQuery::compile("{station: .station | nosuchfilter}", JqLimits::default()).unwrap_err();
    assert!(e.contains("does not compile") && e.contains("undefined filter 'nosuchfilter/0'"), "{e}");
    let e = JqQuery::compile("$nosuchvar", JqLimits::default()).unwrap_err();
    assert!(e.contains("undefined variable '$nosuchvar'"), "{e}");
    // A query too deeply nested to parse runs out of the sandbox's stack, not the server's.
    let deep = format!("{}.{}", "(".repeat(100_000), ")".repeat(100_000));
    let e = JqQuery::compile(&deep, JqLimits::default()).unwrap_err();
    assert!(e.contains("cannot be compiled within the sandbox's limits"), "{e}");
}

#[test]
fn clock_environment_input_and_output_filters_are_refused_at_compile() {
    for (q, name) in [
        ("{t: now}", "now"),
        ("{h: env.HOME}", "env"),
        ("{h: $ENV.HOME}", "$ENV"),
        ("{a: input.a}", "input"),
        ("{a: first(inputs).a}", "inputs"),
        ("{a: .a | debug}", "debug"),
        ("{a: .a | debug(\"x\")}", "debug"),
        ("{a: .a | stderr}", "stderr"),
        ("{f: input_filename}", "input_filename"),
        ("{f: input_line_number}", "input_line_number"),
        ("{f: $__loc__.line}", "$__loc__"),
        ("halt", "halt"),
        ("halt_error", "halt_error"),
        ("halt_error(1)", "halt_error"),
        ("{t: (0 | localtime | mktime)}", "localtime"),
        ("{t: (0 | strflocaltime(\"%Y\"))}", "strflocaltime"),
        ("{p: get_search_list}", "get_search_list"),
        ("debug_empty", "debug_empty"),
        ("stderr_empty", "stderr_empty"),
    ] {
        let e = JqQuery::compile(q, JqLimits::default()).unwrap_err();
        assert!(e.contains(&format!("'{name}' is not allowed")), "{q}: {e}");
    }
    // Modules and data files are not read.
    let e = JqQuery::compile(r#"include "foo"; ."#, JqLimits::default()).unwrap_err();
    assert!(e.contains("reads no modules"), "{e}");
    let e = JqQuery::compile(r#"import "foo" as foo; ."#, JqLimits::default()).unwrap_err();
    assert!(e.contains("reads no modules"), "{e}");
    let e = JqQuery::compile(r#"import "/etc/passwd" as $p; {p: $p}"#, JqLimits::default()).unwrap_err();
    assert!(e.contains("reads no files"), "{e}");
}

#[test]
fn the_standard_library_runs_without_any_import() {
    // Regular expressions, time (UTC), formats, math, paths: none of it calls the WASI
    // imports the component carries (each would trap).
    let mut q = query(
        r#"{
            re: (.station | test("^Don") | tostring),
            sub: (.station | sub("D"; "d") | gsub("i"; "I")),
            cap: (.station | capture("(?<head>[A-Z])").head),
            split: (.station | [splits("n")] | length),
            date: (1700000000 | todate),
            fmt: (1700000000 | strftime("%Y/%m/%d %H")),
            back: ("2023-11-14T22:13:20Z" | fromdate),
            gm: (1700000000 | gmtime | mktime),
            parsed: ("2013-03-01" | strptime("%Y-%m-%d") | mktime),
            offset: ("2013-03-01T08:00:00+08:00" | strptime("%Y-%m-%dT%H:%M:%S%:z") | mktime),
            b64: (.station | @base64),
            b64d: (.station | @base64 | @base64d),
            uri: ("a b" | @uri),
            html: ("<a>" | @html),
            sh: (.station | @sh),
            json: ({a: 1} | tojson),
            fromjson: ("[1,2]" | fromjson | add),
            math: ((2 | sqrt | . * 1000 | floor) + (2 | pow(.; 10)) + (100 | log10)),
            sorted: ([3, 1, 2] | sort | unique | map(tostring) | join(",")),
            grouped: ([{a: 1}, {a: 1}, {a: 2}] | group_by(.a) | length),
            keys: (keys | join(",")),
            entries: (to_entries | length),
            paths: ([paths] | length),
            limited: ([limit(3; repeat(1))] | add),
            ltrim: (.station | ltrimstr("Don")),
            explode: (.station | explode | implode),
            min: ([5, 2, 9] | min),
            any: ([true, false] | any)
        }"#,
    );
    let k = q.keys(DONGSI).unwrap();
    let expected = [
        ("re", "true"),
        ("sub", "dongsI"),
        ("cap", "D"),
        ("split", "2"),
        ("date", "2023-11-14T22:13:20Z"),
        ("fmt", "2023/11/14 22"),
        ("back", "1700000000"),
        ("gm", "1700000000"),
        ("parsed", "1362096000"),
        ("offset", "1362124800"),
        ("b64", "RG9uZ3Np"),
        ("b64d", "Dongsi"),
        ("uri", "a%20b"),
        ("html", "&lt;a&gt;"),
        ("sh", "'Dongsi'"),
        ("json", r#"{"a":1}"#),
        ("fromjson", "3"),
        ("sorted", "1,2,3"),
        ("grouped", "2"),
        ("keys", "PM2.5,month,ok,station,year"),
        ("entries", "5"),
        ("paths", "5"),
        ("limited", "3"),
        ("ltrim", "gsi"),
        ("explode", "Dongsi"),
        ("min", "2"),
        ("any", "true"),
    ];
    for (key, value) in expected {
        assert_eq!(k.get(key).map(String::as_str), Some(value), "{key}: {k:?}");
    }
    assert!(k.contains_key("math"), "{k:?}");
    // A time zone name would need the system's time zone database.
    let e = query(r#"{t: ("2013-03-01 Asia/Shanghai" | strptime("%Y-%m-%d %Q") | mktime)}"#).keys(DONGSI).unwrap_err();
    assert!(e.starts_with("the query failed:"), "{e}");
}

#[test]
fn the_component_imports_only_wasi_which_it_never_calls() {
    let engine = wasmtime::Engine::default();
    let component = wasmtime::component::Component::new(&engine, JQ_COMPONENT_WASM).unwrap();
    let imports: Vec<String> = component.component_type().imports(&engine).map(|(name, _)| name.to_owned()).collect();
    // The Rust standard library links WASI; `JqQuery` defines every import as a trap, and the
    // other tests run the whole standard library through it.
    for name in &imports {
        assert!(name.starts_with("wasi:"), "{imports:?}");
    }
    let exports: Vec<String> = component.component_type().exports(&engine).map(|(name, _)| name.to_owned()).collect();
    assert_eq!(exports, ["compile", "keys"]);
}

/// Budgets small enough that each hostile record costs a fraction of a second.
fn tight() -> JqLimits {
    JqLimits { fuel_per_record: 20_000_000, fuel_per_byte: 0, memory_bytes: 16 << 20 }
}

#[test]
fn hostile_queries_fail_their_record_and_the_next_record_works() {
    let normal = br#"{"station":"Dongsi","n":3}"#;
    for (q, expect) in [
        ("def f: f; f", "exceeded its budget of 20000000 steps"),
        ("last(range(1e12))", "exceeded its budget"),
        ("def f: 1 + f; f", "exceeded its stack"),
        ("def f: [f]; f", "exceeded its stack"),
        ("[range(1e10)]", "exceeded its"),
        ("[limit(100000000; repeat(1))]", "exceeded its"),
        ("[repeat(.)]", "exceeded its"),
        ("reduce range(1e6) as $i (null; [.])", "exceeded its"),
        ("[range(1e5)] | tostring * 1000", "exceeded its"),
    ] {
        // The record decides whether the query misbehaves, so the query compiles and the
        // same JqQuery serves the next record.
        let guarded = format!("if .n == 3 then {{station: .station}} else ({q}) end");
        let mut jq = JqQuery::compile(&guarded, tight()).unwrap_or_else(|e| panic!("{q}: {e}"));
        for round in 0..2 {
            let e = jq.keys(br#"{"station":"Dongsi","n":1}"#).unwrap_err();
            assert!(e.contains(expect), "{q} (round {round}): {e}");
            assert_eq!(jq.keys(normal).unwrap(), keys(&[("station", "Dongsi")]), "{q} (round {round})");
        }
    }
}

#[test]
fn memory_is_bounded_before_fuel_runs_out() {
    let limits = JqLimits { memory_bytes: 16 << 20, ..JqLimits::default() };
    // (`[range(1e10)]` or `[limit(1e8; repeat(1))]` run out of fuel first: each element costs
    // more work than memory.)
    for q in [r#""x" | until(length > 1e9; . + .)"#, r#"[.n, .n] | until(length > 1e9; . + .)"#] {
        let guarded = format!("if .n == 3 then {{n: .n}} else ({q}) end");
        let mut jq = JqQuery::compile(&guarded, limits).unwrap();
        let e = jq.keys(br#"{"n":1}"#).unwrap_err();
        assert_eq!(e, "the query exceeded its memory limit of 16777216 bytes (16 MiB)", "{q}");
        assert_eq!(jq.keys(br#"{"n":3}"#).unwrap(), keys(&[("n", "3")]), "{q}");
    }
}

#[test]
fn hostile_records_fail_alone() {
    let mut q = JqQuery::compile("{station: .station}", tight()).unwrap();
    let deep = "[".repeat(100_000);
    let e = q.keys(deep.as_bytes()).unwrap_err();
    assert_eq!(e, "the record is not JSON: nested more than 512 levels deep");
    let deep_closed = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(q.keys(deep_closed.as_bytes()).unwrap_err().contains("nested more than"));
    // Nesting up to the limit is fine, even through queries that walk it.
    let nested = format!("{{\"station\":\"Dongsi\",\"x\":{}1{}}}", "[".repeat(511), "]".repeat(511));
    assert_eq!(q.keys(nested.as_bytes()).unwrap(), keys(&[("station", "Dongsi")]));
    let mut walk = JqQuery::compile(
        "{station: .station, values: ([..] | length), paths: ([paths] | length), text: (tostring | length)}",
        JqLimits::default(),
    )
    .unwrap();
    assert_eq!(
        walk.keys(nested.as_bytes()).unwrap(),
        keys(&[("station", "Dongsi"), ("values", "514"), ("paths", "513"), ("text", "1048")])
    );
    // Firehose's largest record (1,000 KiB) within the default limits.
    let mut q = query("{station: .station}");
    let big = format!("{{\"station\":\"Dongsi\",\"pad\":\"{}\"}}", "x".repeat(1000 << 10));
    assert_eq!(q.keys(big.as_bytes()).unwrap(), keys(&[("station", "Dongsi")]));
    let many: Vec<String> = (0..35_000).map(|i| format!("{{\"i\":{i},\"v\":\"abcdefghij\"}}")).collect();
    let big = format!("{{\"station\":\"Dongsi\",\"rows\":[{}]}}", many.join(","));
    assert!(big.len() <= 1000 << 10, "{}", big.len());
    assert_eq!(q.keys(big.as_bytes()).unwrap(), keys(&[("station", "Dongsi")]));
    // A record bigger than the memory limit fails alone.
    let mut q = JqQuery::compile("{station: .station}", tight()).unwrap();
    let huge = format!("{{\"station\":\"Dongsi\",\"pad\":\"{}\"}}", "x".repeat(20 << 20));
    let e = q.keys(huge.as_bytes()).unwrap_err();
    assert!(e.contains("memory"), "{e}");
    assert_eq!(q.keys(DONGSI).unwrap(), keys(&[("station", "Dongsi")]));
}

#[test]
fn a_query_is_send() {
    fn send<T: Send + 'static>(_: &T) {}
    let q = query("{station: .station}");
    send(&q);
    let mut q = std::thread::spawn(move || q).join().unwrap();
    assert_eq!(q.keys(DONGSI).unwrap(), keys(&[("station", "Dongsi")]));
}

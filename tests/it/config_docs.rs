//! docs/configuration.md documents exactly the keys the pipeline file accepts: for every table
//! (and every `kind` of a kind-tagged table) the keys its rows name are the keys the parser
//! knows, as the parser itself lists them when refusing an unknown one.

use std::collections::{BTreeMap, BTreeSet};

use tidewatch::Config;

/// A table of the pipeline file, as the documentation names it (`streams[].source`), and the
/// kind its rows are about (`kafka`), if it is kind-tagged.
type Table = (String, Option<String>);

/// The keys each table's rows document.
fn documented() -> BTreeMap<Table, BTreeSet<String>> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .unwrap();
    let mut tables: BTreeMap<Table, BTreeSet<String>> = BTreeMap::new();
    // The kind the rows after `prefix kind = "..."` are about, per prefix.
    let mut kinds: BTreeMap<String, String> = BTreeMap::new();
    let settings = text.split("## Command line").next().unwrap();
    for line in settings.lines() {
        let Some(rest) = line.strip_prefix("| `") else {
            continue;
        };
        let key = rest.split('`').next().unwrap();
        if let Some((prefix, kind)) = key.split_once(" kind = ") {
            kinds.insert(prefix.to_owned(), kind.trim_matches('"').to_owned());
            continue;
        }
        let (table, field) = match key.rsplit_once('.') {
            Some((table, field)) => (table.to_owned(), field.to_owned()),
            None => (String::new(), key.to_owned()),
        };
        let kind = kinds.get(&table).cloned();
        tables.entry((table, kind)).or_default().insert(field);
    }
    // A table with rows of its own (`streams[].fields`) is a key of the table around it.
    let nested: Vec<String> = tables.keys().map(|(table, _)| table.clone()).collect();
    for table in nested.into_iter().filter(|t| !t.is_empty()) {
        let (parent, field) = table.rsplit_once('.').unwrap_or(("", &table));
        let kind = kinds.get(parent).cloned();
        tables
            .entry((parent.to_owned(), kind))
            .or_default()
            .insert(field.trim_end_matches("[]").to_owned());
    }
    tables
}

/// A pipeline file with an unknown key in `table` (of `kind`).
fn with_unknown_key(table: &str, kind: Option<&str>) -> String {
    const UNKNOWN: &str = "zz_not_a_key = 1";
    let kind_field =
        |kind: Option<&str>| kind.map_or(String::new(), |k| format!("kind = \"{k}\", "));
    let mut source = r#"{ kind = "file", path = "in.ndjson" }"#.to_owned();
    let mut stream_extra = String::new();
    let mut fields = r#"{ time = "ts" }"#.to_owned();
    let mut tail = String::new();
    let mut head = String::new();
    match table {
        "" => head = format!("{UNKNOWN}\n"),
        "streams[]" => stream_extra = format!("{UNKNOWN}\n"),
        "streams[].source" => source = format!("{{ {}{UNKNOWN} }}", kind_field(kind)),
        "streams[].fields" => fields = format!("{{ time = \"ts\", {UNKNOWN} }}"),
        "streams[].watermark" | "streams[].dedup" | "streams[].analytics" => {
            let name = table.rsplit('.').next().unwrap();
            stream_extra = format!("{name} = {{ {UNKNOWN} }}\n");
        }
        "streams[].analytics.zscore" => {
            stream_extra = format!("analytics = {{ zscore = {{ {UNKNOWN} }} }}\n")
        }
        "streams[].windows[]" => {
            stream_extra = format!("windows = [{{ {}{UNKNOWN} }}]\n", kind_field(kind))
        }
        "joins[]" | "sinks[]" | "notify[]" => {
            let name = table.trim_end_matches("[]");
            let kind = kind.map_or(String::new(), |k| format!("kind = \"{k}\"\n"));
            tail = format!("[[{name}]]\n{kind}{UNKNOWN}\n");
        }
        "checkpoint" | "engine" | "live" | "web" | "auth" => {
            tail = format!("[{table}]\n{UNKNOWN}\n");
        }
        other => panic!("the test does not know how to reach table {other:?}: teach it"),
    }
    let sink = if table == "sinks[]" {
        String::new()
    } else {
        "[[sinks]]\nkind = \"ndjson\"\npath = \"out\"\n".to_owned()
    };
    format!(
        "{head}[[streams]]\nname = \"s\"\nsource = {source}\nfields = {fields}\n{stream_extra}\
         {sink}{tail}"
    )
}

/// The keys the parser accepts in `table`, from its refusal of an unknown one.
fn accepted(table: &str, kind: Option<&str>) -> BTreeSet<String> {
    let toml = with_unknown_key(table, kind);
    let error = match Config::from_toml_str(&toml) {
        Ok(_) => panic!("an unknown key was accepted in {table} ({kind:?}):\n{toml}"),
        Err(error) => error.to_string(),
    };
    let expected = error
        .rsplit_once("zz_not_a_key")
        .and_then(|(_, rest)| rest.split("expected").nth(1))
        .unwrap_or_else(|| panic!("not the refusal of an unknown key: {error}\n{toml}"));
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_configuration_reference_documents_exactly_the_keys_the_parser_accepts() {
    let documented = documented();
    assert!(documented.len() > 15, "the tables were not found");
    let mut differences = Vec::new();
    for ((table, kind), keys) in &documented {
        let mut accepted = accepted(table, kind.as_deref());
        // In a kind-tagged table `kind` chooses the table, documented by its `kind = ...` rows.
        if kind.is_some() {
            accepted.remove("kind");
        }
        for key in accepted.difference(keys) {
            differences.push(format!(
                "{table}.{key} ({kind:?}): accepted, not documented"
            ));
        }
        for key in keys.difference(&accepted) {
            differences.push(format!(
                "{table}.{key} ({kind:?}): documented, not accepted"
            ));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

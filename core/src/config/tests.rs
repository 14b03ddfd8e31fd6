use super::*;

fn file(text: &str) -> ConfigFile {
    ConfigFile {
        path: PathBuf::from("pipeline.toml"),
        text: text.to_string(),
    }
}

fn env(name: &str) -> Option<String> {
    (name == "LS_SECRET").then(|| "s3cret".to_string())
}

const GOOD: &str = r#"
[server]
listen = "127.0.0.1:0"
max_body = "64KiB"

[[sources]]
name = "leadshark"
path = "/webhooks/leadshark"
verify = { scheme = "leadshark", secrets = ["${LS_SECRET}", "${OLD:-old-dev-secret}", "${OLDER:-}"] }

[[pipelines]]
name = "crm"
source = "leadshark"
events = ["email.captured", "new.*"]
stages = [
  { filter = "event", events = ["email.captured"] },
  { sink = "file", path = "out.jsonl" },
]

[[pipelines]]
name = "audit"
source = "leadshark"

[[pipelines.stages]]
sink = "stdout"

[[pipelines.stages]]
name = "second"
sink = "stdout"
"#;

#[test]
fn parses_the_documented_shape() {
    let f = file(GOOD);
    let cfg = f.parse_with_env(&env).expect("valid");
    assert_eq!(cfg.server.listen, "127.0.0.1:0");
    assert_eq!(cfg.server.max_body.as_u64(), 64 * 1024);
    assert_eq!(cfg.sources.len(), 1);
    assert_eq!(cfg.pipelines.len(), 2);
    let crm = &cfg.pipelines[0];
    assert_eq!(crm.events, vec!["email.captured", "new.*"]);
    assert_eq!(crm.stages[0].kind, StageKind::Filter);
    assert_eq!(crm.stages[1].name, "file");
    assert!(
        !crm.stages[1].config.has("sink"),
        "engine keys are stripped"
    );
    assert!(crm.stages[1].config.has("path"));
    let audit = &cfg.pipelines[1];
    assert_eq!(audit.events, vec!["*"]);
    assert_eq!(
        audit
            .stages
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["stdout", "second"]
    );
    assert_eq!(cfg.insecure_defaults().len(), 1);
    assert_eq!(
        cfg.insecure_defaults()[0].var,
        "OLD",
        "an empty optional slot (`OLDER`) is not insecure"
    );
    // `audit` names one of its two `stdout` sinks: the other is named by its order.
    let advice = cfg.unnamed_repeats();
    assert_eq!(advice.len(), 1, "{advice:?}");
    assert!(
        advice[0].starts_with(
            "pipeline `audit` uses `stdout` 2 times and names its stages `stdout` by their order"
        ),
        "{}",
        advice[0]
    );
}

#[test]
fn stages_named_only_by_their_order_are_pointed_out() {
    let text = |stages: &str| {
        format!(
            r#"
[[sources]]
name = "leadshark"
path = "/webhooks/leadshark"
verify = {{ scheme = "leadshark", secrets = ["x"] }}

[[pipelines]]
name = "p"
source = "leadshark"
stages = [{stages}]
"#
        )
    };
    let advice = |stages: &str| {
        let f = file(&text(stages));
        let cfg = f.parse_with_env(&env).expect("valid");
        cfg.unnamed_repeats()
    };
    let three = advice(
        r#"{ sink = "stdout" }, { filter = "event", events = ["*"] }, { sink = "stdout" }, { sink = "stdout" }"#,
    );
    assert_eq!(three.len(), 1, "{three:?}");
    assert!(
        three[0].contains("`p` uses `stdout` 3 times and names its stages `stdout`, `stdout#2`, `stdout#3` by their order"),
        "{}",
        three[0]
    );
    assert!(three[0].contains("Give each a `name`"), "{}", three[0]);
    // Every use named, or each plugin used once: nothing to say.
    assert!(
        advice(r#"{ name = "a", sink = "stdout" }, { name = "b", sink = "stdout" }"#).is_empty()
    );
    assert!(advice(r#"{ filter = "event", events = ["*"] }, { sink = "stdout" }"#).is_empty());
}

fn errors(text: &str) -> Vec<Diagnostic> {
    match file(text).parse_with_env(&env) {
        Ok(_) => panic!("expected errors"),
        Err(d) => d.0,
    }
}

#[test]
fn reports_every_problem_with_line_column_and_key() {
    let text = GOOD
        .replace("max_body = \"64KiB\"", "max_body = \"64KiB\"\nlisen = 1")
        .replace(
            "events = [\"email.captured\", \"new.*\"]",
            "events = [\"email.captured\", \"new.*\"]\nsorce = \"x\"",
        )
        .replace("${LS_SECRET}", "${NOPE}");
    let errs = errors(&text);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    let listen = errs
        .iter()
        .find(|d| d.message.contains("lisen"))
        .expect("unknown server key");
    assert_eq!(listen.key.as_deref(), Some("server.lisen"));
    assert_eq!((listen.line, listen.column), (5, 1));
    let sorce = errs
        .iter()
        .find(|d| d.message.contains("sorce"))
        .expect("unknown pipeline key");
    assert_eq!(sorce.key.as_deref(), Some("pipelines[0].sorce"));
    let var = errs
        .iter()
        .find(|d| d.message.contains("NOPE"))
        .expect("unset var");
    assert_eq!(var.key.as_deref(), Some("sources[0].verify.secrets[0]"));
    assert_eq!(var.line, 10);
}

#[test]
fn stage_must_name_exactly_one_kind() {
    let text = GOOD.replace(
        "{ sink = \"file\", path = \"out.jsonl\" }",
        "{ path = \"out.jsonl\" }",
    );
    let errs = errors(&text);
    assert!(errs[0].message.contains("exactly one of"), "{errs:?}");
    let text = GOOD.replace(
        "{ sink = \"file\", path = \"out.jsonl\" }",
        "{ sink = \"file\", filter = \"x\" }",
    );
    assert!(errors(&text)[0].message.contains("exactly one"));
}

#[test]
fn unknown_source_and_duplicates() {
    let text = GOOD.replace(
        "source = \"leadshark\"\nevents",
        "source = \"leedshark\"\nevents",
    );
    let errs = errors(&text);
    assert!(
        errs[0].message.contains("unknown source `leedshark`"),
        "{errs:?}"
    );
    assert_eq!(errs[0].key.as_deref(), Some("pipelines[0].source"));
    let text = GOOD.replace("name = \"audit\"", "name = \"crm\"");
    assert!(errors(&text)[0].message.contains("used twice"));
}

#[test]
fn a_broken_source_is_reported_once_not_once_per_pipeline() {
    // A misspelt scheme: the source does not parse; both pipelines use it.
    let text = GOOD.replace("scheme = \"leadshark\"", "scheme = \"leadshork\"");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].message.contains("leadshork"), "{errs:?}");
    assert!(
        !errs.iter().any(|d| d.message.contains("unknown source")),
        "{errs:?}"
    );
}

#[test]
fn syntax_error_is_located() {
    let errs = errors("[server]\nlisten = \n");
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].line, 2);
}

#[test]
fn bad_listen_and_unknown_section() {
    let text = GOOD
        .replace("127.0.0.1:0", "localhost")
        .replace("[server]", "[servr]\n[server]");
    let errs = errors(&text);
    assert!(
        errs.iter()
            .any(|d| d.message.contains("unknown section `servr`")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|d| d.message.contains("not a socket address")),
        "{errs:?}"
    );
}

#[test]
fn empty_config_needs_a_source() {
    let errs = errors("");
    assert!(errs[0].message.contains("no `[[sources]]`"));
}

#[test]
fn display_names_file_line_column_and_key() {
    let d = Diagnostic {
        file: PathBuf::from("p.toml"),
        line: 3,
        column: 7,
        key: Some("a.b".into()),
        message: "bad".into(),
    };
    assert_eq!(d.to_string(), "p.toml:3:7: `a.b`: bad");
}

#[test]
fn plugins_section_defaults_and_resolution() {
    let f = ConfigFile {
        path: PathBuf::from("/etc/hookline/pipeline.toml"),
        text: GOOD.to_string(),
    };
    let cfg = f.parse_with_env(&env).expect("valid");
    assert_eq!(cfg.plugins_dir(), PathBuf::from("/etc/hookline/plugins"));
    assert_eq!(
        cfg.plugin_cache_dir(),
        PathBuf::from("/etc/hookline/data/wasm-cache"),
        "beside the journal"
    );
    let f = ConfigFile {
        path: PathBuf::from("/etc/hookline/pipeline.toml"),
        text: format!("[plugins]\ndir = \"wasm\"\ncache_dir = \"/var/cache/hl\"\n{GOOD}"),
    };
    let cfg = f.parse_with_env(&env).expect("valid");
    assert_eq!(cfg.plugins_dir(), PathBuf::from("/etc/hookline/wasm"));
    assert_eq!(cfg.plugin_cache_dir(), PathBuf::from("/var/cache/hl"));
}

#[test]
fn plugins_section_rejects_unknown_keys() {
    let errs = errors(&format!("[plugins]\ndirr = \"x\"\n{GOOD}"));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].message.contains("dirr"), "{errs:?}");
    assert_eq!((errs[0].line, errs[0].column), (2, 1));
}

#[test]
fn secrets_from_files_are_read_and_empty_ones_are_located_errors() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("ls.secret"), "from-file\n").expect("write");
    std::fs::write(dir.path().join("empty.secret"), "").expect("write");
    let at = |text: String| ConfigFile {
        path: dir.path().join("pipeline.toml"),
        text,
    };
    let f = at(GOOD.replace("${LS_SECRET}", "file:ls.secret"));
    let cfg = f.parse_with_env(&env).expect("valid");
    assert!(cfg.sources[0].verify.describe().contains("(2 of 3 set"));

    let f = at(GOOD.replace("${LS_SECRET}", "file:empty.secret"));
    let errs = f.parse_with_env(&env).expect_err("empty file").0;
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].key.as_deref(), Some("sources[0].verify.secrets[0]"));
    assert_eq!((errs[0].line, errs[0].column), (9, 45));
    assert!(
        errs[0].message.contains("empty.secret is empty"),
        "{errs:?}"
    );

    // A variable set to nothing is refused; the optional slot `${OLDER:-}` is not.
    let set_empty = |name: &str| (name == "LS_SECRET").then(String::new);
    let errs = file(GOOD).parse_with_env(&set_empty).expect_err("empty").0;
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].key.as_deref(), Some("sources[0].verify.secrets[0]"));
    assert!(errs[0].message.contains("is empty"), "{errs:?}");
}

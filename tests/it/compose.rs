//! `docker-compose.yml` and the `Dockerfile` cannot run here (no Docker engine), so this checks
//! what can go wrong without running them: the services and their start order, the ports, the
//! environment Tidewatch reads, the files they mount or copy, and that the pipeline config the
//! stack uses is one Tidewatch accepts and points at the stack's own Kafka and PostgreSQL.

use std::path::{Path, PathBuf};

use tidewatch::Config;
use tidewatch::SinkConfig;
use tidewatch::SourceConfig;
use yaml_rust2::{Yaml, YamlLoader};

use crate::support::{assert_success, tidewatch};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn compose() -> Yaml {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    YamlLoader::load_from_str(&text)
        .expect("docker-compose.yml is valid YAML")
        .remove(0)
}

fn service<'a>(compose: &'a Yaml, name: &str) -> &'a Yaml {
    let service = &compose["services"][name];
    assert!(
        !service.is_badvalue(),
        "docker-compose.yml has no service {name:?}"
    );
    service
}

fn strings(yaml: &Yaml) -> Vec<String> {
    yaml.as_vec()
        .map(|items| {
            items
                .iter()
                .map(|i| i.as_str().expect("a string").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn env<'a>(service: &'a Yaml, key: &str) -> &'a str {
    service["environment"][key]
        .as_str()
        .unwrap_or_else(|| panic!("environment {key} is not set"))
}

/// The value after `flag` in a command line.
fn flag<'a>(command: &'a [String], flag: &str) -> &'a str {
    let at = command
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} missing from {command:?}"));
    &command[at + 1]
}

/// The pipeline config the `tidewatch` service runs, found through its bind mount.
fn tidewatch_config(compose: &Yaml) -> (PathBuf, Config) {
    let tidewatch_service = service(compose, "tidewatch");
    let command = strings(&tidewatch_service["command"]);
    let inside = flag(&command, "--config");
    let mount = strings(&tidewatch_service["volumes"])
        .into_iter()
        .find_map(|v| {
            let mut parts = v.split(':');
            let (from, to) = (parts.next()?, parts.next()?);
            (to == inside).then(|| repo().join(from))
        })
        .unwrap_or_else(|| panic!("no volume mounts the config file {inside}"));
    let config = Config::from_file(&mount)
        .unwrap_or_else(|e| panic!("{} is rejected: {e}", mount.display()));
    (mount, config)
}

#[test]
fn the_stack_has_kafka_in_kraft_mode_postgres_tidewatch_and_a_producer() {
    let compose = compose();
    let kafka = service(&compose, "kafka");
    // The broker users run is the one the tests run (tests/kafka/pom.xml).
    let pom = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kafka/pom.xml"))
        .unwrap();
    let tested = pom
        .split("<artifactId>kafka_2.13</artifactId>")
        .nth(1)
        .and_then(|rest| rest.split("<version>").nth(1))
        .and_then(|rest| rest.split("</version>").next())
        .expect("the Kafka version in tests/kafka/pom.xml");
    assert_eq!(
        kafka["image"].as_str().unwrap(),
        format!("apache/kafka:{tested}")
    );
    assert!(env(kafka, "KAFKA_PROCESS_ROLES").contains("controller"));
    assert!(kafka["environment"]["KAFKA_ZOOKEEPER_CONNECT"].is_badvalue());
    let postgres = service(&compose, "postgres");
    assert!(postgres["image"].as_str().unwrap().starts_with("postgres:"));
    let tidewatch_service = service(&compose, "tidewatch");
    assert_eq!(strings(&tidewatch_service["ports"]), ["8080:8080"]);
    assert!(env(tidewatch_service, "TIDEWATCH_LISTEN").ends_with(":8080"));
    let producer = service(&compose, "producer");
    assert_eq!(strings(&producer["command"])[0], "produce");
}

#[test]
fn services_start_in_order_and_wait_only_on_healthchecks_that_exist() {
    let compose = compose();
    let services = compose["services"].as_hash().unwrap();
    for (name, service) in services {
        let Some(depends) = service["depends_on"].as_hash() else {
            continue;
        };
        for (on, condition) in depends {
            let on = on.as_str().unwrap();
            let target = &compose["services"][on];
            assert!(!target.is_badvalue(), "{name:?} depends on unknown {on:?}");
            match condition["condition"].as_str() {
                Some("service_healthy") => assert!(
                    !target["healthcheck"].is_badvalue(),
                    "{name:?} waits for {on:?} to be healthy, which has no healthcheck"
                ),
                Some("service_completed_successfully" | "service_started") => {}
                other => panic!("{name:?} -> {on:?}: unexpected condition {other:?}"),
            }
        }
    }
    let tidewatch_service = service(&compose, "tidewatch");
    let needs = |on: &str| tidewatch_service["depends_on"][on]["condition"].as_str();
    assert_eq!(needs("postgres"), Some("service_healthy"));
    assert_eq!(needs("topics"), Some("service_completed_successfully"));
    assert_eq!(
        service(&compose, "topics")["depends_on"]["kafka"]["condition"].as_str(),
        Some("service_healthy")
    );
}

#[test]
fn the_pipeline_config_is_valid_and_points_at_the_stack() {
    let compose = compose();
    let (path, config) = tidewatch_config(&compose);
    // The binary agrees with the library.
    assert_success(&tidewatch(
        &["check-config", path.to_str().unwrap()],
        &repo(),
    ));

    // Kafka: the brokers are the kafka service's advertised listener; the topic is the one the
    // topics service creates and the producer writes.
    let SourceConfig::Kafka(kafka) = &config.streams[0].source else {
        panic!("the compose pipeline reads Kafka");
    };
    let advertised = env(service(&compose, "kafka"), "KAFKA_ADVERTISED_LISTENERS");
    assert!(
        advertised.contains(&format!("//{}", kafka.brokers)),
        "brokers {} not among {advertised}",
        kafka.brokers
    );
    let topics_command = strings(&service(&compose, "topics")["command"]);
    assert_eq!(flag(&topics_command, "--topic"), kafka.topics[0]);
    let producer_command = strings(&service(&compose, "producer")["command"]);
    assert_eq!(flag(&producer_command, "--topic"), kafka.topics[0]);
    assert_eq!(flag(&producer_command, "--brokers"), kafka.brokers);

    // PostgreSQL: the URL's credentials, host and database are the postgres service's.
    let url = config
        .sinks
        .iter()
        .find_map(|s| match s {
            SinkConfig::Db(db) => Some(db.url.clone()),
            _ => None,
        })
        .expect("a db sink");
    let postgres = service(&compose, "postgres");
    let expected = format!(
        "postgres://{}:{}@postgres:5432/{}",
        env(postgres, "POSTGRES_USER"),
        env(postgres, "POSTGRES_PASSWORD"),
        env(postgres, "POSTGRES_DB")
    );
    assert_eq!(url, expected);
}

#[test]
fn commands_and_environment_are_ones_the_binary_accepts() {
    let compose = compose();
    let dir = repo();
    for (name, subcommand) in [("tidewatch", "serve"), ("producer", "produce")] {
        let service = service(&compose, name);
        let command = strings(&service["command"]);
        assert_eq!(command[0], subcommand, "{name}");
        let help = assert_success(&tidewatch(&[subcommand, "--help"], &dir));
        let flags: std::collections::HashSet<&str> = help
            .split(|c: char| c.is_whitespace() || ",=[]<".contains(c))
            .filter(|word| word.starts_with("--"))
            .collect();
        for arg in command.iter().filter(|a| a.starts_with("--")) {
            assert!(
                flags.contains(arg.as_str()),
                "{name}: `{subcommand}` has no {arg}"
            );
        }
        if let Some(environment) = service["environment"].as_hash() {
            for key in environment.keys().filter_map(Yaml::as_str) {
                if key.starts_with("TIDEWATCH_") {
                    assert!(
                        help.contains(key),
                        "{name}: `{subcommand}` does not read {key}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_dockerfile_copies_files_that_exist_and_runs_the_binary() {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let instructions: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let stages = instructions
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert!(stages >= 2, "a multi-stage build");
    for copy in instructions.iter().filter(|l| l.starts_with("COPY ")) {
        if copy.contains("--from=") {
            continue;
        }
        let parts: Vec<&str> = copy.split_whitespace().skip(1).collect();
        for source in &parts[..parts.len() - 1] {
            assert!(
                Path::new(&repo().join(source)).exists(),
                "Dockerfile copies {source}, which does not exist"
            );
        }
    }
    let after_last_from = text.rsplit("\nFROM ").next().unwrap();
    assert!(after_last_from.contains("ENTRYPOINT [\"tidewatch\"]"));
    assert!(after_last_from.contains("EXPOSE 8080"));
    assert!(after_last_from.contains("COPY --from=build /src/target/release/tidewatch"));
}

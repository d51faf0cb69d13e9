//! Issue 26 item 1: the language of every text (ISO 639-1 and a confidence) on the sentiment
//! results of `Classify`, `IngestScored` and the timeline, and in `rapport classify`'s output.

mod common;

use common::*;
use rapport::pb;
use std::io::Write;
use std::process::{Command, Stdio};

const FRENCH: &str =
    "@acme ma commande n'est toujours pas arrivée, c'est la troisième fois que je \
                      vous écris et personne ne me répond";
const GERMAN: &str = "Ich warte seit zwei Wochen auf meine Bestellung und niemand antwortet mir";
const ENGLISH: &str = "I have been waiting two weeks for my order and nobody answers me";

fn language_of(result: &pb::SentimentResult) -> (&str, f64) {
    (result.language.as_str(), result.language_confidence)
}

#[tokio::test]
async fn classify_names_the_language_of_each_text() {
    let mut t = start().await;
    let response = t
        .sentiment
        .classify(pb::ClassifyRequest {
            texts: vec![
                FRENCH.into(),
                GERMAN.into(),
                ENGLISH.into(),
                "@acme https://t.co/x 42".into(),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    let languages: Vec<&str> = response.results.iter().map(|r| language_of(r).0).collect();
    assert_eq!(languages, ["fr", "de", "en", ""]);
    for result in &response.results[..3] {
        let confidence = result.language_confidence;
        assert!(confidence > 0.0 && confidence <= 1.0, "{result:?}");
    }
    // Nothing in a mention, a link and a number is a language: no code, no confidence.
    assert_eq!(response.results[3].language_confidence, 0.0);
}

#[tokio::test]
async fn ingest_scored_answers_carry_the_language() {
    let mut t = start().await;
    let events = vec![
        with_text(event("acme", "ann", "l1", T0_MS), FRENCH),
        with_text(event("acme", "bob", "l2", T0_MS + 1), GERMAN),
        // No text: no sentiment, hence no language either.
        event("acme", "cid", "l3", T0_MS + 2),
    ];
    let answers: Vec<pb::ScoredInteraction> = {
        use futures::StreamExt;
        t.ingest
            .ingest_scored(tokio_stream::iter(events))
            .await
            .unwrap()
            .into_inner()
            .map(|answer| answer.unwrap())
            .collect()
            .await
    };
    assert_eq!(answers.len(), 3);
    let first = answers[0].sentiment.as_ref().expect("text: sentiment");
    assert_eq!(first.language, "fr");
    assert!(first.language_confidence > 0.0);
    let second = answers[1].sentiment.as_ref().expect("text: sentiment");
    assert_eq!(second.language, "de");
    assert!(answers[2].sentiment.is_none());
}

#[tokio::test]
async fn the_timeline_names_the_language_of_each_kept_snippet() {
    let mut t = start().await;
    let mut french = with_text(event("acme", "ann", "t1", T0_MS - 2 * HOUR_MS), FRENCH);
    french.channel = pb::Channel::Twitter as i32;
    let english = with_text(event("acme", "ann", "t2", T0_MS - HOUR_MS), ENGLISH);
    let summary = t.ingest_all(vec![french, english]).await;
    assert_eq!(summary.accepted, 2, "{summary:?}");
    let timeline = t
        .scoring
        .get_timeline(pb::GetTimelineRequest {
            tenant_id: "acme".into(),
            customer_id: "ann".into(),
            page_size: 10,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let languages: Vec<&str> = timeline
        .touchpoints
        .iter()
        .map(|touchpoint| touchpoint.sentiment.as_ref().unwrap().language.as_str())
        .collect();
    // Newest first.
    assert_eq!(languages, ["en", "fr"]);
}

#[test]
fn classify_command_prints_the_language_as_its_fourth_column_and_the_cues_as_its_sixth() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rapport"))
        .arg("classify")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            format!("{FRENCH}\n{ENGLISH}\n12345\nJe vais résilier, troisième fois que j'écris\n")
                .as_bytes(),
        )
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|line| line.split('\t').collect())
        .collect();
    assert_eq!(rows.len(), 4, "{stdout}");
    for row in &rows {
        assert_eq!(
            row.len(),
            6,
            "label, score, confidence, language, its confidence, cues: {row:?}"
        );
    }
    assert_eq!(
        (rows[2][5], rows[3][5]),
        ("-", "cancel_threat,repeat_contact"),
        "{stdout}"
    );
    assert_eq!((rows[0][3], rows[1][3], rows[2][3]), ("fr", "en", "-"));
    let confidence: f64 = rows[0][4].parse().unwrap();
    assert!(confidence > 0.0 && confidence <= 1.0, "{stdout}");
    assert_eq!(rows[2][4], "0.0000");
}

/// The language of every inbound text is read at ingest and kept: GetCustomer lists the
/// languages a customer waits for an answer in; TopCustomers, ClaimNext, WatchPriorities and a
/// segment's `language` condition filter on it; a code the detector does not name is refused,
/// naming the field; all of it the same after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_are_filtered_by_the_language_they_wait_in() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let mut config = rapport::config::Config::from_toml(
        "[[segments]]\nname = \"francophone\"\nall = [{ field = \"language\", op = \"in\", value = [\"fr\"] }]",
    )
    .unwrap();
    let loopback = loopback_config();
    config.server.grpc_addr = loopback.server.grpc_addr;
    config.server.metrics_addr = loopback.server.metrics_addr;
    config.durability.data_dir = Some(dir.path().to_path_buf());
    let mut t = start_with(config.clone()).await;
    let now = rapport::engine::now_ms() - MINUTE_MS;
    let asks = |customer: &str, id: &str, text: &str| {
        let mut question = with_text(event("acme", customer, id, now - MINUTE_MS), text);
        question.channel = pb::Channel::Email as i32;
        question.thread_id = format!("t-{id}");
        question
    };
    // A watcher of French messages, before the events.
    let mut watch = t
        .scoring
        .watch_priorities(pb::WatchPrioritiesRequest {
            tenant_id: "acme".into(),
            min_priority: 0.0,
            language: "fr".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    t.ingest_all(vec![
        asks("amelie", "1", FRENCH),
        asks("bernd", "2", GERMAN),
        asks("carol", "3", ENGLISH),
        // Answered: no longer waiting, so not French-waiting any more.
        asks(
            "denise",
            "4",
            "Bonjour, je n'arrive pas à me connecter à mon compte depuis hier soir",
        ),
    ])
    .await;
    let mut answer = outbound(event("acme", "denise", "5", now));
    answer.channel = pb::Channel::Email as i32;
    answer.thread_id = "t-4".into();
    t.ingest_all(vec![answer]).await;

    let heard = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("a French update")
        .unwrap()
        .unwrap();
    assert_eq!(heard.score.unwrap().customer_id, "amelie");

    let top_in = |language: &str, segment: &str| pb::TopCustomersRequest {
        tenant_id: "acme".into(),
        limit: 10,
        language: language.into(),
        segment: segment.into(),
        ..Default::default()
    };
    for round in 0..2 {
        let amelie = t.customer("acme", "amelie", now).await;
        assert_eq!(amelie.waiting_languages, ["fr"], "round {round}");
        let bernd = t.customer("acme", "bernd", now).await;
        assert_eq!(bernd.waiting_languages, ["de"]);
        let denise = t.customer("acme", "denise", now).await;
        assert!(denise.waiting_languages.is_empty(), "{denise:?}");
        for (language, segment, expected) in [
            ("fr", "", vec!["amelie"]),
            ("de", "", vec!["bernd"]),
            ("en", "", vec!["carol"]),
            ("it", "", vec![]),
            ("", "francophone", vec!["amelie"]),
        ] {
            let customers = t
                .scoring
                .top_customers(top_in(language, segment))
                .await
                .unwrap()
                .into_inner()
                .customers;
            let ids: Vec<&str> = customers.iter().map(|c| c.customer_id.as_str()).collect();
            assert_eq!(ids, expected, "{language:?} {segment:?}, round {round}");
        }
        let refused = t
            .scoring
            .top_customers(top_in("klingon", ""))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(
            refused.message().starts_with("language"),
            "{}",
            refused.message()
        );
        t.server.shutdown(Duration::from_secs(5)).await.unwrap();
        t = start_with(config.clone()).await;
    }
    let claimed = t
        .scoring
        .claim_next(pb::ClaimNextRequest {
            tenant_id: "acme".into(),
            agent_id: "hans".into(),
            language: "de".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(claimed.customer.unwrap().customer_id, "bernd");
    t.server.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// `[language] candidates`: the detector chooses only among the tenant base's languages; an
/// unknown code stops the config naming its key.
#[tokio::test]
async fn candidates_in_the_config_restrict_the_languages_named() {
    let portuguese = "Encomendei um telefone na semana passada e ainda não chegou em casa";
    let mut everything = start().await;
    let answer = everything
        .sentiment
        .classify(pb::ClassifyRequest {
            texts: vec![portuguese.into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.results[0].language, "pt");

    let mut config = loopback_config();
    config.language =
        rapport::config::Config::from_toml("[language]\ncandidates = [\"fr\", \"es\"]")
            .unwrap()
            .language;
    let mut restricted = start_with(config).await;
    let answer = restricted
        .sentiment
        .classify(pb::ClassifyRequest {
            texts: vec![portuguese.into(), FRENCH.into()],
        })
        .await
        .unwrap()
        .into_inner();
    let portuguese_as = answer.results[0].language.as_str();
    assert!(matches!(portuguese_as, "fr" | "es"), "{portuguese_as:?}");
    assert_eq!(answer.results[1].language, "fr");

    let error = rapport::config::Config::from_toml("[language]\ncandidates = [\"en\", \"xx\"]")
        .unwrap_err()
        .to_string();
    assert!(error.contains("language.candidates[1]"), "{error}");
    assert!(error.contains("\"xx\""), "{error}");
}

/// Issue 26 item 2: `train fast --add` leaves out the added rows whose text is in a `--val` file
/// (UMSAB's English train split holds most of TweetEval's val tweets), and reports each val file.
#[test]
fn train_fast_keeps_validation_texts_out_of_added_data() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, rows: &[(&str, &str)]| {
        let path = dir.path().join(name);
        let mut text = String::from("label\ttext\n");
        for (label, body) in rows {
            text.push_str(&format!("{label}\t{body}\n"));
        }
        std::fs::write(&path, text).unwrap();
        path
    };
    let train = write(
        "train.tsv",
        &[
            ("positive", "love it"),
            ("negative", "hate it"),
            ("neutral", "it is tuesday"),
        ],
    );
    let val = write(
        "val.tsv",
        &[("positive", "j'adore"), ("negative", "je déteste")],
    );
    let other_val = write("other_val.tsv", &[("neutral", "c'est mardi")]);
    let added = write(
        "added.tsv",
        &[
            ("positive", "j'adore"),
            ("positive", "génial"),
            ("negative", "nul"),
            ("neutral", "c'est mardi"),
        ],
    );
    let out = dir.path().join("model.bin");
    let output = Command::new(env!("CARGO_BIN_EXE_rapport"))
        .args([
            "train",
            "fast",
            "--epochs",
            "1",
            "--buckets-log2",
            "10",
            "--add-repeat",
            "2",
        ])
        .arg("--train")
        .arg(&train)
        .arg("--add")
        .arg(&added)
        .arg("--val")
        .arg(&val)
        .arg(&other_val)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("2 of 4 texts left out (they are in a --val file)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("added 2 gold-labelled texts from 1 file(s), each seen 2 time(s)"),
        "{stdout}"
    );
    for val in [&val, &other_val] {
        assert!(
            stdout.contains(&format!("{}: macro-recall", val.display())),
            "{stdout}"
        );
    }
    assert!(out.exists());
}

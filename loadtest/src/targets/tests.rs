//! The targets judged against made-up runs: each bound, each floor, and
//! every way a run can fail its targets.

use super::verdict::{table, whole};
use super::*;
use crate::report::{
    ChatFigures, ConnectFigures, EchoFigures, Figures, InboxFigures, Report, RestFigures,
    StoreFigures,
};

fn report<F: Figures>(delivered_per_s: f64, figures: F) -> Option<Report<F>> {
    Some(Report {
        delivered_per_s,
        figures,
        ..Report::default()
    })
}

fn full_run() -> Reports {
    let mut chat_rate = report(
        9_990.0,
        ChatFigures {
            offered_per_s: Some(10_000),
            stored: Some(99_900),
            acknowledged: 99_900,
            ..ChatFigures::default()
        },
    );
    chat_rate.as_mut().unwrap().latency_ms.p99 = 3.2;
    Reports {
        echo: report(400_000.0, EchoFigures::default()),
        store_ceiling: report(200_000.0, StoreFigures::default()),
        chat: report(
            150_000.0,
            ChatFigures {
                stored: Some(1_500_000),
                acknowledged: 1_500_000,
                ..ChatFigures::default()
            },
        ),
        chat_rate,
        rest: report(
            0.0,
            RestFigures {
                sends_per_s: 31_000.0,
                reads_per_s: 49_000.0,
                concurrency: 64,
                ..RestFigures::default()
            },
        ),
        connect: report(
            0.0,
            ConnectFigures {
                connect_per_s: 18_000.0,
                connections_held: 50_000,
                rss_per_connection_bytes: Some(3_900.0),
                rss_per_connection_end_of_hold_bytes: Some(3_050.0),
                ..ConnectFigures::default()
            },
        ),
        connect_ceiling: report(
            0.0,
            ConnectFigures {
                connect_per_s: 22_500.0,
                ..ConnectFigures::default()
            },
        ),
        inbox: report(
            140_000.0,
            InboxFigures {
                stored: Some(1_400_000),
                acknowledged: 1_400_000,
                users: 2_000,
                chats_per_user: 20,
                ..InboxFigures::default()
            },
        ),
        connect_user: report(
            0.0,
            ConnectFigures {
                connect_per_s: 14_000.0,
                connections_held: 50_000,
                rss_per_connection_end_of_hold_bytes: Some(10_600.0),
                chats_per_user: Some(100),
                ..ConnectFigures::default()
            },
        ),
        connect_user_sync: report(
            0.0,
            ConnectFigures {
                connect_per_s: 9_000.0,
                connections_held: 50_000,
                rss_per_connection_end_of_hold_bytes: Some(6_900.0),
                chats_per_user: Some(100),
                ..ConnectFigures::default()
            },
        ),
    }
}

fn chat(run: &mut Reports) -> &mut Report<ChatFigures> {
    run.chat.as_mut().unwrap()
}

fn connect(run: &mut Reports) -> &mut Report<ConnectFigures> {
    run.connect.as_mut().unwrap()
}

/// The CPU figures a floor is made of: PostgreSQL 6.0 µs per chat message,
/// echo 5.0 µs per message, 2 cores (at most 181,818 msg/s).
fn with_floor_figures(mut run: Reports) -> Reports {
    let figures = &mut chat(&mut run).figures;
    figures.database_cpu_per_message_us = Some(6.0);
    figures.machine.cores = Some(2);
    run.echo.as_mut().unwrap().figures.tool_cpu_per_message_us = Some(5.0);
    run
}

/// The CPU figures a socket's floor is made of: the bare upgrade 33.0 and
/// its client 46.0 µs per socket (the ceiling run), PostgreSQL 10.0 and
/// Redis 3.0 µs per socket (the connect run), 2 cores: at most 21,739/s.
fn with_socket_floor_figures(mut run: Reports) -> Reports {
    let ceiling = &mut run.connect_ceiling.as_mut().unwrap().figures;
    ceiling.server_cpu_per_connection_us = Some(33.0);
    ceiling.tool_cpu_per_connection_us = Some(46.0);
    let figures = &mut connect(&mut run).figures;
    figures.database_cpu_per_connection_us = Some(10.0);
    figures.bus_cpu_per_connection_us = Some(3.0);
    figures.machine.cores = Some(2);
    run
}

fn statuses(verdicts: &[Verdict]) -> Vec<Status> {
    verdicts.iter().map(|v| v.status).collect()
}

#[test]
fn each_target_is_judged_against_its_bound() {
    use Status::{Met, NotMet};
    let verdicts = evaluate(&full_run(), 50_000);
    assert_eq!(
        statuses(&verdicts),
        [Met, Met, NotMet, Met, NotMet, Met, Met, NotMet, NotMet, Met, Met, NotMet],
        "{verdicts:#?}"
    );
    assert_eq!(verdicts[2].measured, "0.38 (150,000 / 400,000 msg/s)");
    assert!(verdicts[6]
        .measured
        .starts_with("0.93 (140,000 / 150,000 msg/s"));
    assert_eq!(
        verdicts[7].measured,
        "0.78 (14,000/s / 18,000/s; 50,000 held)"
    );
    assert_eq!(
        verdicts[8].measured,
        "10,600 B at the end of the hold, 100 chats each (bound 10,496 B)"
    );
    assert_eq!(
        verdicts[9].measured,
        "6,900 B at the end of the hold, 100 chats each (bound 10,496 B)"
    );
    assert_eq!(
        verdicts[4].measured,
        "18,000/s, 50,000 held; ceiling 22,500/s (0.80×)"
    );
}

#[test]
fn the_cores_idle_share_follows_the_floor_when_measured() {
    let mut run = with_socket_floor_figures(with_floor_figures(full_run()));
    chat(&mut run).figures.machine.idle_share = Some(0.124);
    connect(&mut run).figures.machine.idle_share = Some(0.016);
    let verdicts = evaluate(&run, 50_000);
    assert!(
        verdicts[2]
            .measured
            .ends_with("(chat 0.82× of it); the cores 12% idle"),
        "{}",
        verdicts[2].measured
    );
    assert!(
        verdicts[4]
            .measured
            .ends_with("(connect 0.83× of it); the cores 2% idle"),
        "{}",
        verdicts[4].measured
    );
    let without = evaluate(&with_floor_figures(full_run()), 50_000);
    assert!(
        !without[2].measured.contains("idle"),
        "{}",
        without[2].measured
    );
}

#[test]
fn a_ratio_just_under_its_bound_is_not_met_and_just_over_is() {
    let mut run = full_run();
    run.echo.as_mut().unwrap().delivered_per_s = 300_000.0;
    chat(&mut run).delivered_per_s = 149_999.0;
    assert_eq!(evaluate(&run, 50_000)[2].status, Status::NotMet);
    chat(&mut run).delivered_per_s = 150_001.0;
    assert_eq!(evaluate(&run, 50_000)[2].status, Status::Met);
}

#[test]
fn a_ratio_the_runs_floor_puts_above_reach_is_out_of_reach() {
    let mut run = with_floor_figures(full_run());
    // At most 2 cores / 11 µs = 181,818 msg/s: half of echo (200,000) is
    // out of reach; 70% of the store ceiling (140,000) is met.
    let verdicts = evaluate(&run, 50_000);
    assert_eq!(verdicts[2].status, Status::OutOfReach);
    assert_eq!(
        verdicts[2].measured,
        "0.38 (150,000 / 400,000 msg/s); floor: database 6.0 + echo 5.0 µs per message, \
         so at most 181,818 msg/s on 2 cores (chat 0.82× of it)"
    );
    assert_eq!(verdicts[3].status, Status::Met);

    run.store_ceiling.as_mut().unwrap().delivered_per_s = 300_000.0;
    assert_eq!(
        evaluate(&run, 50_000)[3].status,
        Status::OutOfReach,
        "210,000 asked"
    );
    chat(&mut run).figures.database_cpu_per_message_us = Some(4.0);
    let verdicts = evaluate(&run, 50_000);
    assert_eq!(
        statuses(&verdicts)[2..4],
        [Status::NotMet, Status::NotMet],
        "at most 222,222 msg/s: both within reach"
    );

    chat(&mut run).errors = 1;
    assert_eq!(evaluate(&run, 50_000)[2].status, Status::Failed);
}

#[test]
fn a_connect_rate_the_runs_floor_puts_above_reach_is_out_of_reach() {
    let mut run = with_socket_floor_figures(full_run());
    let verdict = &evaluate(&run, 50_000)[4];
    assert_eq!(verdict.status, Status::NotMet, "21,739/s is within reach");
    assert_eq!(
        verdict.measured,
        "18,000/s, 50,000 held; ceiling 22,500/s (0.80×); floor: upgrade 33.0 + client 46.0 \
         + database 10.0 + bus 3.0 µs per socket, so at most 21,739/s on 2 cores \
         (connect 0.83× of it)"
    );

    connect(&mut run).figures.database_cpu_per_connection_us = Some(21.0);
    assert_eq!(
        evaluate(&run, 50_000)[4].status,
        Status::OutOfReach,
        "103 µs per socket: at most 19,417/s"
    );
    assert_eq!(
        evaluate(&run, 60_000)[4].status,
        Status::NotMet,
        "50,000 held of 60,000 asked is not the floor's doing"
    );

    connect(&mut run).figures.bus_cpu_per_connection_us = None;
    let verdict = &evaluate(&run, 50_000)[4];
    assert_eq!(
        verdict.status,
        Status::NotMet,
        "no local Redis: 100 µs, 20,000/s is within reach"
    );
    assert!(
        verdict
            .measured
            .contains("floor: upgrade 33.0 + client 46.0 + database 21.0 µs per socket"),
        "{}",
        verdict.measured
    );

    run.connect_ceiling.as_mut().unwrap().errors = 1;
    let verdict = &evaluate(&run, 50_000)[4];
    assert!(
        !verdict.measured.contains("floor"),
        "a failed ceiling bounds nothing"
    );
}

#[test]
fn a_failed_echo_run_gives_no_floor() {
    let mut run = with_floor_figures(full_run());
    run.store_ceiling.as_mut().unwrap().delivered_per_s = 300_000.0;
    run.echo.as_mut().unwrap().errors = 2;
    let verdicts = evaluate(&run, 50_000);
    assert_eq!(verdicts[2].status, Status::Failed, "the echo ratio itself");
    assert_eq!(
        verdicts[3].status,
        Status::NotMet,
        "not out of reach by a failed run's figure"
    );
    assert_eq!(verdicts[3].measured, "0.50 (150,000 / 300,000 rows/s)");
}

#[test]
fn a_run_with_errors_or_a_store_that_disagrees_fails_its_targets() {
    let mut run = full_run();
    chat(&mut run).figures.stored = Some(1_499_999);
    run.rest.as_mut().unwrap().errors = 3;
    let verdicts = evaluate(&run, 50_000);
    assert_eq!(verdicts[0].status, Status::Failed, "stored ≠ acknowledged");
    assert_eq!(
        verdicts[2].status,
        Status::Failed,
        "the ratio uses that run"
    );
    assert_eq!(verdicts[3].status, Status::Failed);
    assert_eq!(
        verdicts[6].status,
        Status::Failed,
        "the inbox ratio uses it too"
    );
    assert_eq!(verdicts[10].status, Status::Failed);
    assert_eq!(verdicts[11].status, Status::Failed);
    assert_eq!(verdicts[1].status, Status::Met, "the rate run was clean");

    type Fault = fn(&mut Report<ChatFigures>);
    let faults: [(&str, Fault); 3] = [
        ("lost", |r| r.lost = Some(1)),
        ("out_of_order", |r| r.out_of_order = Some(2)),
        ("problems", |r| {
            r.problems = vec!["1 acknowledged message never reached the peer".into()]
        }),
    ];
    for (key, fault) in faults {
        let mut run = full_run();
        fault(run.chat_rate.as_mut().unwrap());
        assert_eq!(evaluate(&run, 50_000)[1].status, Status::Failed, "{key}");
    }
}

#[test]
fn a_report_read_back_fails_by_the_rule_the_exit_status_follows() {
    let read_back = |report: &Report<ChatFigures>| -> Report<ChatFigures> {
        serde_json::from_value(serde_json::to_value(report).unwrap()).unwrap()
    };
    let mut report = Report::<ChatFigures>::default();
    assert!(!read_back(&report).failed());
    report.duplicated = Some(1);
    assert!(report.faults().any());
    assert!(read_back(&report).failed());
}

#[test]
fn memory_is_judged_on_the_idle_sockets_at_the_end_of_the_hold() {
    let mut run = full_run();
    connect(&mut run).figures.rss_per_connection_bytes = Some(4_178.0);
    let verdict = &evaluate(&run, 50_000)[5];
    assert_eq!(verdict.status, Status::Met);
    assert_eq!(
        verdict.measured,
        "3,050 B at the end of the hold (4,178 B right after the storm)"
    );
    connect(&mut run)
        .figures
        .rss_per_connection_end_of_hold_bytes = Some(4_097.0);
    assert_eq!(evaluate(&run, 50_000)[5].status, Status::NotMet);
}

#[test]
fn a_user_socket_that_synced_every_chat_is_judged_on_its_own_storm() {
    let mut run = full_run();
    let synced = &mut run.connect_user_sync.as_mut().unwrap().figures;
    synced.rss_per_connection_end_of_hold_bytes = Some(10_497.0);
    assert_eq!(evaluate(&run, 50_000)[9].status, Status::NotMet);
    let synced = &mut run.connect_user_sync.as_mut().unwrap().figures;
    synced.chats_per_user = Some(200);
    assert_eq!(
        evaluate(&run, 50_000)[9].measured,
        "10,497 B at the end of the hold, 200 chats each (bound 16,896 B)"
    );
    assert_eq!(evaluate(&run, 50_000)[9].status, Status::Met);
    let synced = &mut run.connect_user_sync.as_mut().unwrap().figures;
    (synced.syncs_answered_after_s, synced.held_for_s) = (Some(13.634), 20);
    assert_eq!(
        evaluate(&run, 50_000)[9].measured,
        "10,497 B at the end of the hold, 200 chats each (bound 16,896 B); \
         held 20 s from when every sync was answered, 13.6 s into the storm"
    );
    // The `{}` storm's row does not stand in for it.
    run.connect_user_sync = None;
    assert_eq!(evaluate(&run, 50_000)[9].status, Status::NotRun);
    assert_eq!(evaluate(&run, 50_000)[8].status, Status::NotMet);
}

#[test]
fn fewer_sockets_held_than_asked_or_a_slow_rate_is_not_met() {
    let mut run = full_run();
    connect(&mut run).figures.connect_per_s = 21_000.0;
    assert_eq!(evaluate(&run, 50_000)[4].status, Status::Met);
    assert_eq!(
        evaluate(&run, 60_000)[4].status,
        Status::NotMet,
        "50,000 held of 60,000 asked"
    );
    run.chat_rate.as_mut().unwrap().figures.offered_per_s = Some(5_000);
    assert_eq!(
        evaluate(&run, 50_000)[1].status,
        Status::NotMet,
        "the latency target is at 10,000 msg/s offered"
    );
}

#[test]
fn missing_reports_are_not_run_and_the_table_has_every_target() {
    let verdicts = evaluate(&Reports::default(), 50_000);
    assert!(verdicts.iter().all(|v| v.status == Status::NotRun));
    let table = table(&verdicts);
    assert_eq!(table.lines().count(), 2 + 12);
    assert!(table.contains("| connect 50,000 sockets at ≥ 20,000/s |  | not run |"));
}

#[test]
fn reports_are_read_from_their_files() {
    let dir = std::env::temp_dir().join(format!("loadtest-targets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("echo.json"), r#"{"delivered_per_s": 12.5}"#).unwrap();
    std::fs::write(dir.join("chat-rate.json"), r#"{"offered_per_s": 7}"#).unwrap();
    let reports = Reports::load(&dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(reports.echo.as_ref().unwrap().delivered_per_s, 12.5);
    assert_eq!(
        reports.chat_rate.as_ref().unwrap().figures.offered_per_s,
        Some(7)
    );
    assert!(reports.chat.is_none() && reports.connect_ceiling.is_none());
}

#[test]
fn whole_numbers_are_grouped_by_thousands() {
    assert_eq!(whole(0.0), "0");
    assert_eq!(whole(999.4), "999");
    assert_eq!(whole(1_000.0), "1,000");
    assert_eq!(whole(1_234_567.0), "1,234,567");
}

#[test]
fn the_inbox_row_says_what_a_message_costs_in_each_run() {
    let mut run = full_run();
    let inbox = &mut run.inbox.as_mut().unwrap().figures;
    inbox.database_cpu_per_message_us = Some(16.0);
    inbox.server_cpu_per_message_us = Some(6.0);
    inbox.tool_cpu_per_message_us = Some(6.0);
    let figures = &mut chat(&mut run).figures;
    figures.database_cpu_per_message_us = Some(8.0);
    figures.server_cpu_per_message_us = Some(4.0);
    figures.tool_cpu_per_message_us = Some(2.0);
    let verdicts = evaluate(&run, 50_000);
    assert!(
        verdicts[6].measured.ends_with(
            "; CPU µs per message, inbox / chat: database 16.0 / 8.0, server 6.0 / 4.0, \
             tester 6.0 / 2.0 (28.0 / 14.0: 0.50×)"
        ),
        "{}",
        verdicts[6].measured
    );

    chat(&mut run).figures.tool_cpu_per_message_us = None;
    let verdicts = evaluate(&run, 50_000);
    assert!(
        !verdicts[6].measured.contains("CPU µs"),
        "a figure missing: no comparison"
    );
}

#[test]
fn the_user_socket_row_says_what_a_socket_costs_in_each_storm() {
    let mut run = full_run();
    let per_chat = &mut connect(&mut run).figures;
    per_chat.server_cpu_per_connection_us = Some(40.0);
    per_chat.tool_cpu_per_connection_us = Some(45.0);
    per_chat.database_cpu_per_connection_us = Some(12.0);
    per_chat.bus_cpu_per_connection_us = Some(3.0);
    let users = &mut run.connect_user.as_mut().unwrap().figures;
    users.server_cpu_per_connection_us = Some(60.0);
    users.tool_cpu_per_connection_us = Some(55.0);
    users.database_cpu_per_connection_us = Some(11.0);
    users.bus_cpu_per_connection_us = Some(4.0);
    let verdicts = evaluate(&run, 50_000);
    assert!(
        verdicts[7].measured.ends_with(
            "; CPU µs per socket, user / per-chat: server 60.0 / 40.0, tester 55.0 / 45.0, \
             database 11.0 / 12.0, bus 4.0 / 3.0 (130.0 / 100.0: 0.77×)"
        ),
        "{}",
        verdicts[7].measured
    );
}

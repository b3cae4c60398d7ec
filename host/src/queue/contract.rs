//! What every queue promises, checked against each one: order, bounded
//! appends that wait, acknowledgement, opaque positions and claims.

use super::disk::DiskQueue;
use super::jetstream::{JetStreamQueue, LEASE, Options};
use super::memory::MemoryQueue;
use super::testing::{change, partition};
use super::{Entry, Partition, Position, Queue, QueueError};
use std::sync::Arc;
use std::time::Duration;

/// A queue under test, and how many of its appends wait for room.
trait Probe: Queue + 'static {
    fn waiting(&self) -> usize;
}

impl Probe for DiskQueue {
    fn waiting(&self) -> usize {
        self.appends_waiting()
    }
}

impl Probe for MemoryQueue {
    fn waiting(&self) -> usize {
        self.appends_waiting()
    }
}

impl Probe for JetStreamQueue {
    fn waiting(&self) -> usize {
        self.appends_waiting()
    }
}

/// A real nats-server, as the integration tests start it.
#[allow(dead_code)]
#[path = "../../../tests/nats.rs"]
mod nats;

/// Runs `check` against a disk queue, a memory queue and a queue on a real
/// NATS JetStream server, each of `capacity`.
fn each(capacity: u64, check: impl Fn(Arc<dyn Probe>)) {
    let dir = tempfile::tempdir().unwrap();
    let disk = DiskQueue::open(&dir.path().join("queue.redb"), capacity).unwrap();
    check(Arc::new(disk));
    check(Arc::new(MemoryQueue::new(capacity)));
    let server = nats::Nats::start();
    let runtime = runtime(2);
    let options = Options {
        replicas: 1,
        capacity,
        lease: LEASE,
    };
    let queue = jetstream(&runtime, &server, options);
    check(Arc::new(queue.unwrap()));
}

/// A multi-threaded runtime of `workers` threads, as the daemon's.
fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

/// A queue on `server`, its calls made on `runtime`.
fn jetstream(
    runtime: &tokio::runtime::Runtime,
    server: &nats::Nats,
    options: Options,
) -> Result<JetStreamQueue, QueueError> {
    JetStreamQueue::connect(runtime.handle().clone(), &server.url(), options)
}

fn entries(read: &[(Position, Entry)]) -> Vec<Entry> {
    read.iter().map(|(_, e)| e.clone()).collect()
}

#[test]
fn entries_come_back_in_order_after_the_position_given() {
    each(100, |queue| {
        let p = partition("main");
        let first = queue.append(&p, &[change(1)]).unwrap();
        let last = queue.append(&p, &[change(2), change(3)]).unwrap();
        assert!(first < last);
        let all = queue.read(&p, Position::START, 10, Duration::ZERO).unwrap();
        assert_eq!(entries(&all), [change(1), change(2), change(3)]);
        assert_eq!(all[2].0, last);
        let after_first = queue.read(&p, first, 10, Duration::ZERO).unwrap();
        assert_eq!(entries(&after_first), [change(2), change(3)]);
        let one = queue.read(&p, Position::START, 1, Duration::ZERO).unwrap();
        assert_eq!(entries(&one), [change(1)]);
    });
}

#[test]
fn acknowledged_entries_go_and_depth_counts_what_waits() {
    each(100, |queue| {
        let p = partition("main");
        assert_eq!(queue.acked(&p).unwrap(), Position::START);
        queue
            .append(&p, &[change(1), change(2), change(3)])
            .unwrap();
        let read = queue.read(&p, Position::START, 10, Duration::ZERO).unwrap();
        queue.ack(&p, read[0].0).unwrap();
        assert_eq!(queue.acked(&p).unwrap(), read[0].0);
        assert_eq!(queue.depth(&p), 2);
        let rest = queue
            .read(&p, queue.acked(&p).unwrap(), 10, Duration::ZERO)
            .unwrap();
        assert_eq!(entries(&rest), [change(2), change(3)]);
        // Acknowledging again, or an older position, changes nothing.
        queue.ack(&p, Position::START).unwrap();
        assert_eq!(queue.depth(&p), 2);
        queue.ack(&p, read[2].0).unwrap();
        assert_eq!(queue.depth(&p), 0);
        // Positions keep growing once everything was acknowledged.
        let next = queue.append(&p, &[change(4)]).unwrap();
        assert!(next > read[2].0);
    });
}

#[test]
fn partitions_are_independent() {
    each(100, |queue| {
        let (main, other) = (partition("main"), partition("other"));
        queue.append(&main, &[change(1)]).unwrap();
        queue.append(&other, &[change(2)]).unwrap();
        let read = queue
            .read(&main, Position::START, 10, Duration::ZERO)
            .unwrap();
        assert_eq!(entries(&read), [change(1)]);
        queue.ack(&main, read[0].0).unwrap();
        assert_eq!((queue.depth(&main), queue.depth(&other)), (0, 1));
    });
}

#[test]
fn a_full_partition_makes_append_wait_instead_of_dropping() {
    each(2, |queue| {
        let p = partition("main");
        queue.append(&p, &[change(1), change(2)]).unwrap();
        let writer = {
            let (queue, p) = (queue.clone(), p.clone());
            std::thread::spawn(move || queue.append(&p, &[change(3)]).unwrap())
        };
        // The writer is seen waiting, not assumed to be after a sleep.
        while queue.waiting() == 0 {
            assert!(!writer.is_finished(), "append must wait while full");
            std::thread::yield_now();
        }
        assert_eq!(queue.depth(&p), 2, "nothing was dropped or squeezed in");
        let read = queue.read(&p, Position::START, 1, Duration::ZERO).unwrap();
        queue.ack(&p, read[0].0).unwrap();
        let last = writer.join().unwrap();
        let rest = queue.read(&p, read[0].0, 10, Duration::ZERO).unwrap();
        assert_eq!(entries(&rest), [change(2), change(3)]);
        assert_eq!(rest[1].0, last);
    });
}

#[test]
fn a_reader_waits_for_the_next_entry() {
    each(10, |queue| {
        let p = partition("main");
        assert!(
            queue
                .read(&p, Position::START, 10, Duration::ZERO)
                .unwrap()
                .is_empty()
        );
        let reader = {
            let (queue, p) = (queue.clone(), p.clone());
            std::thread::spawn(move || {
                queue
                    .read(&p, Position::START, 10, Duration::from_secs(600))
                    .unwrap()
            })
        };
        queue.append(&p, &[change(1)]).unwrap();
        assert_eq!(entries(&reader.join().unwrap()), [change(1)]);
    });
}

#[test]
fn a_partition_has_one_claim_at_a_time() {
    each(10, |queue| {
        let (main, other) = (partition("main"), partition("other"));
        let claim = queue.claim(&main).unwrap();
        assert!(matches!(
            queue.claim(&main),
            Err(QueueError::Claimed { .. })
        ));
        let _other = queue.claim(&other).expect("another partition is free");
        drop(claim);
        queue.claim(&main).expect("released when dropped");
    });
}

#[test]
fn the_source_has_one_leader_at_a_time() {
    each(10, |queue| {
        let lead = queue.lead().unwrap();
        assert!(lead.held());
        assert!(matches!(queue.lead(), Err(QueueError::Claimed { .. })));
        let _main = queue
            .claim(&partition("main"))
            .expect("partitions are apart");
        drop(lead);
        queue.lead().expect("released when dropped");
        assert_eq!(queue.share(12), 12, "alone, it holds every partition");
    });
}

#[test]
fn a_partition_token_is_safe_as_a_subject_and_a_file_name() {
    let odd = Partition {
        repo: "https://user:pa$$@host/a b/../c.git".into(),
        branch: "feature/x.y>*".into(),
    };
    for p in [odd, partition("main")] {
        let token = p.token();
        assert_eq!(token.len(), 16);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
    }
    assert_ne!(partition("main").token(), partition("other").token());
}

#[test]
fn cursors_are_kept_per_source_and_forgotten_on_request() {
    each(10, |queue| {
        let set = |key: &str, value: Option<&str>| (key.to_owned(), value.map(str::to_owned));
        queue
            .save_cursors(
                "cluster a",
                &[set("configmaps", Some("5")), set("secrets", Some("7"))],
            )
            .unwrap();
        queue
            .save_cursors("cluster b", &[set("configmaps", Some("900"))])
            .unwrap();
        queue
            .save_cursors(
                "cluster a",
                &[set("configmaps", Some("6")), set("secrets", None)],
            )
            .unwrap();
        let a = queue.cursors("cluster a").unwrap();
        assert_eq!(
            a.into_iter().collect::<Vec<_>>(),
            [("configmaps".to_owned(), "6".to_owned())]
        );
        assert_eq!(queue.cursors("cluster b").unwrap()["configmaps"], "900");
        assert!(
            queue.cursors("cluster").unwrap().is_empty(),
            "no prefix match"
        );
    });
}

/// A replica that dies holding a claim (its renewals stop with it) lets
/// the partition go within the lease; one that lives keeps it past the
/// lease by renewing.
#[test]
fn a_claim_on_jetstream_lapses_when_its_holder_dies_and_holds_while_it_lives() {
    let server = nats::Nats::start();
    let lease = Duration::from_secs(4);
    let options = Options {
        replicas: 1,
        capacity: 10,
        lease,
    };
    let runtime = || runtime(1);
    let (alive, other) = (runtime(), runtime());
    let queue = |rt: &tokio::runtime::Runtime| jetstream(rt, &server, options).unwrap();
    let (a, b) = (queue(&alive), queue(&other));
    let (main, other_partition) = (partition("main"), partition("other"));
    let held = a.claim(&main).unwrap();
    let lead = a.lead().unwrap();
    // Past the lease, renewed: still held.
    std::thread::sleep(lease + lease / 2);
    assert!(held.held() && lead.held());
    assert!(matches!(b.claim(&main), Err(QueueError::Claimed { .. })));
    assert!(matches!(b.lead(), Err(QueueError::Claimed { .. })));
    assert!(b.leader().is_some_and(|l| l == a.holder()));
    assert_eq!((a.share(12), b.share(12)), (6, 6), "two replicas live");
    drop(held);
    // A holder that dies: its runtime (and renewals) gone, never released.
    let dying = runtime();
    let c = queue(&dying);
    // Its first heartbeat is written by a task of its own: soon, not at once.
    let joined = std::time::Instant::now();
    while b.share(12) != 4 {
        assert!(
            joined.elapsed() < Duration::from_secs(30),
            "the third replica never counted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let lapsing = c.claim(&other_partition).unwrap();
    dying.shutdown_background();
    // It knows before another can take it: not renewed for 2/3 of the lease.
    std::thread::sleep(lease * 3 / 4);
    assert!(!lapsing.held(), "a claim not renewed still says it holds");
    std::mem::forget(lapsing);
    std::mem::forget(c);
    assert!(matches!(
        b.claim(&other_partition),
        Err(QueueError::Claimed { .. })
    ));
    let started = std::time::Instant::now();
    let taken = loop {
        if let Ok(claim) = b.claim(&other_partition) {
            break claim;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the dead holder's claim never lapsed"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    drop(taken);
    while b.share(12) != 6 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the dead replica never left the roll"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A watch event appended again (a restart resumed the watch before the
/// cursor past it was saved) is dropped by its id; the same content from
/// a listing, or sent again on purpose, is not.
#[test]
fn jetstream_drops_a_replayed_watch_event_and_keeps_everything_else() {
    let server = nats::Nats::start();
    let runtime = runtime(1);
    let options = Options {
        replicas: 1,
        capacity: 100,
        lease: LEASE,
    };
    let queue = jetstream(&runtime, &server, options).unwrap();
    let main = partition("main");
    let replayed = |version: &str| {
        let Entry::File(mut change) = change(1) else {
            unreachable!()
        };
        change.replay = Some(format!("uid-1/{version}/UPDATE"));
        Entry::File(change)
    };
    let first = queue
        .append(&main, &[replayed("7"), replayed("8")])
        .unwrap();
    let again = queue
        .append(&main, &[replayed("7"), replayed("8")])
        .unwrap();
    assert_eq!(
        again, first,
        "the replay is acknowledged where it first went"
    );
    assert_eq!(queue.depth(&main), 2);
    queue.append(&main, &[change(1), change(1)]).unwrap();
    assert_eq!(
        queue.depth(&main),
        4,
        "entries without a replay key all stay"
    );
}

/// A stream made before with a narrower duplicate window (an older
/// version, by hand) is widened: a replay after the window would be
/// appended twice.
#[test]
fn jetstream_widens_a_narrow_duplicate_window_it_finds() {
    let server = nats::Nats::start();
    let runtime = runtime(1);
    let window = |context: &async_nats::jetstream::Context| {
        runtime.block_on(async {
            let mut stream = context.get_stream(super::jetstream::STREAM).await.unwrap();
            stream.info().await.unwrap().config.duplicate_window
        })
    };
    let context = runtime.block_on(async {
        let context = crate::nats::connect(&server.url()).await.unwrap();
        let narrow = async_nats::jetstream::stream::Config {
            name: super::jetstream::STREAM.into(),
            subjects: vec!["plumbline.queue.*".into()],
            duplicate_window: Duration::from_secs(2),
            ..Default::default()
        };
        context.create_stream(narrow).await.unwrap();
        context
    });
    assert_eq!(window(&context), Duration::from_secs(2));
    let options = Options {
        replicas: 1,
        capacity: 10,
        lease: LEASE,
    };
    let queue = jetstream(&runtime, &server, options).unwrap();
    assert_eq!(window(&context), Duration::from_secs(600));
    let main = partition("main");
    queue.append(&main, &[change(1)]).unwrap();
    assert_eq!(queue.depth(&main), 1, "the stream still takes entries");
}

/// A refusal (three copies asked of a single server) is not waited out
/// as a cluster electing a leader would be: it is the error, naming why.
#[test]
fn jetstream_reports_a_refused_stream_without_waiting_it_out() {
    let server = nats::Nats::start();
    let runtime = runtime(1);
    let options = Options {
        replicas: 3,
        capacity: 100,
        lease: LEASE,
    };
    let refused = jetstream(&runtime, &server, options);
    let error = refused.err().expect("a single server holds one copy");
    assert!(
        !crate::nats::passing(&error),
        "a refusal is not retried: {error}"
    );
    let told = crate::telemetry::chain(&error);
    assert!(told.contains("replicas"), "{told}");
    assert!(told.contains(&server.url()), "{told}");
}

#[test]
fn a_take_of_ours_that_lapsed_is_taken_over_at_once_and_no_one_elses() {
    let server = nats::Nats::start();
    let runtime = runtime(1);
    let handle = runtime.handle();
    let ttl = Duration::from_secs(30);
    let bucket = handle.block_on(async {
        let context = crate::nats::connect(&server.url()).await.unwrap();
        let config = async_nats::jetstream::kv::Config {
            bucket: "leases".into(),
            max_age: ttl,
            ..Default::default()
        };
        crate::nats::bucket(&context, config).await.unwrap()
    });
    let take = |holder: &str| {
        handle.block_on(crate::nats::lease::Lease::take(
            handle, &bucket, "k", holder, ttl,
        ))
    };
    let first = take("a").unwrap().expect("free");
    assert!(take("a").unwrap().is_none(), "held: not ours to take again");
    // Lapsed (as a pause past the lease leaves it): a new take of the
    // same process has it at once, with a larger epoch; another
    // process waits for the age limit.
    first.lapse();
    assert!(take("b").unwrap().is_none(), "another's until it ages out");
    let again = take("a").unwrap().expect("ours, lapsed");
    assert!(again.epoch() > first.epoch());
    assert!(again.held() && !first.held());
}

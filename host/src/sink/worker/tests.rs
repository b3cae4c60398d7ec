//! The worker's parts together, against each embedded queue and a real
//! bare repository that the `git` program reads back.

use super::*;
use crate::layout::BaseFolder;
use crate::queue::testing::each_queue;
use std::process::Command;

/// A bare repository (not there yet, if `exists` is false).
fn remote(dir: &tempfile::TempDir, exists: bool) -> Partition {
    let path = dir.path().join("remote.git");
    if exists {
        git(
            &dir.path().to_string_lossy(),
            &["init", "-q", "--bare", "-b", "main", "remote.git"],
        );
    }
    Partition {
        repo: path.to_string_lossy().into_owned().into(),
        branch: "main".into(),
    }
}

fn git(dir: &str, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The files of the remote's branch.
fn files(p: &Partition) -> Vec<String> {
    let out = git(p.repo.as_str(), &["ls-tree", "-r", "--name-only", "main"]);
    out.lines().map(str::to_owned).collect()
}

fn folder(prune: Prune) -> Folder {
    Folder {
        name: "team".into(),
        base_folder: BaseFolder::new("team").unwrap(),
        prune,
    }
}

fn path(name: &str) -> String {
    format!("team/ns/core/configmaps/{name}.yaml")
}

fn file(name: &str, content: &str, actor: Option<&str>) -> Entry {
    Entry::File(FileChange {
        destination: "team".into(),
        path: path(name),
        content: Some(format!("{content}\n")),
        operation: Operation::Update,
        actor: actor.map(str::to_owned),
        resource: "configmaps".into(),
        replay: None,
        trace: None,
    })
}

/// A seed of `names`, ending complete or not.
fn seed(id: u64, names: &[&str], complete: bool) -> Vec<Entry> {
    let destination = "team".to_owned();
    let mut entries = vec![Entry::SeedStart {
        destination: destination.clone(),
        seed: id,
        resources: None,
    }];
    entries.extend(names.iter().map(|n| file(n, n, None)));
    entries.push(Entry::SeedEnd {
        destination,
        seed: id,
        complete,
        deleted_by: None,
    });
    entries
}

/// Runs a worker of `p` until everything queued is pushed.
fn sync(
    queue: &Arc<dyn Queue>,
    p: &Partition,
    prune: Prune,
    retry_for: Option<Duration>,
) -> Result<SyncReport, SinkError> {
    let mut options = SinkOptions::new("test");
    options.retry_for = retry_for;
    sync_with(queue, p, prune, options)
}

/// Runs a worker of `p` with `options` until everything queued is pushed.
fn sync_with(
    queue: &Arc<dyn Queue>,
    p: &Partition,
    prune: Prune,
    options: SinkOptions,
) -> Result<SyncReport, SinkError> {
    let gitdir = tempfile::tempdir().unwrap();
    let (metrics, _) = Metrics::new();
    let health = Arc::new(Health::default());
    let mut worker = Worker::new(
        p.clone(),
        vec![folder(prune)],
        queue.clone(),
        gitdir.path(),
        options,
        metrics,
        health,
    )?;
    let signals = Signals::default();
    signals.finish.store(true, Ordering::Release);
    worker.run(&signals)
}

#[test]
fn a_seed_is_committed_pushed_and_then_acknowledged() {
    each_queue(100, |queue| {
        let dir = tempfile::tempdir().unwrap();
        let p = remote(&dir, true);
        queue.append(&p, &seed(1, &["a", "b", "c"], true)).unwrap();
        let report = sync(&queue, &p, Prune::Always, None).unwrap();
        assert_eq!(files(&p), [path("a"), path("b"), path("c")]);
        assert_eq!((report.written, report.commits, report.files), (3, 1, 3));
        assert_eq!(queue.depth(&p), 0, "acknowledged once pushed");
    });
}

#[test]
fn orphans_go_only_after_a_complete_seed() {
    each_queue(100, |queue| {
        let dir = tempfile::tempdir().unwrap();
        let p = remote(&dir, true);
        queue.append(&p, &seed(1, &["a", "b"], true)).unwrap();
        sync(&queue, &p, Prune::Always, None).unwrap();
        queue.append(&p, &seed(2, &["a"], false)).unwrap();
        let kept = sync(&queue, &p, Prune::Always, None).unwrap();
        assert_eq!(kept.orphans_kept, 1);
        assert_eq!(files(&p), [path("a"), path("b")], "an incomplete seed");
        queue.append(&p, &seed(3, &["a"], true)).unwrap();
        let pruned = sync(&queue, &p, Prune::Always, None).unwrap();
        assert_eq!((pruned.deleted, pruned.orphans_kept), (1, 0));
        assert_eq!(files(&p), [path("a")]);
    });
}

#[test]
fn an_unchanged_object_makes_no_commit() {
    each_queue(100, |queue| {
        let dir = tempfile::tempdir().unwrap();
        let p = remote(&dir, true);
        queue.append(&p, &seed(1, &["a"], true)).unwrap();
        sync(&queue, &p, Prune::Always, None).unwrap();
        queue.append(&p, &seed(2, &["a"], true)).unwrap();
        let again = sync(&queue, &p, Prune::Always, None).unwrap();
        assert_eq!((again.commits, again.written), (0, 0));
        assert_eq!(queue.depth(&p), 0, "acknowledged though nothing was pushed");
        assert_eq!(
            git(p.repo.as_str(), &["rev-list", "--count", "main"]).trim(),
            "1"
        );
    });
}

/// A seed's changes touch every folder, and Git rewrites each folder a
/// commit touches: a seed commits in batches of its own, larger size.
#[test]
fn a_seed_commits_in_its_own_larger_batches_and_followed_changes_in_theirs() {
    each_queue(100, |queue| {
        let dir = tempfile::tempdir().unwrap();
        let p = remote(&dir, true);
        let mut options = SinkOptions::new("test");
        options.batch.files = 1;
        options.seed_batch.files = 3;
        let mut entries = seed(1, &["a", "b", "c", "d", "e"], true);
        entries.extend([file("a", "2", None), file("b", "2", None)]);
        queue.append(&p, &entries).unwrap();
        let report = sync_with(&queue, &p, Prune::Always, options).unwrap();
        // The seed: 3 files, then 2 at its end; then one commit a change.
        assert_eq!((report.written, report.commits), (7, 4));
        let counts = git(
            p.repo.as_str(),
            &["log", "--reverse", "--format=%s", "main"],
        );
        let counts: Vec<&str> = counts
            .lines()
            .map(|s| s.split(' ').nth(1).unwrap_or_default())
            .collect();
        assert_eq!(counts, ["3", "2", "1", "1"]);
    });
}

#[test]
fn each_author_gets_a_commit_of_their_own() {
    each_queue(100, |queue| {
        let dir = tempfile::tempdir().unwrap();
        let p = remote(&dir, true);
        let entries = [
            file("a", "1", Some("alice")),
            file("b", "1", Some("alice")),
            file("c", "1", Some("bob")),
        ];
        queue.append(&p, &entries).unwrap();
        let report = sync(&queue, &p, Prune::Always, None).unwrap();
        assert_eq!(report.commits, 2);
        let authors = git(p.repo.as_str(), &["log", "--format=%an", "main"]);
        assert_eq!(authors, "bob\nalice\n");
    });
}

#[test]
fn a_remote_that_is_down_loses_nothing() {
    each_queue(100, |queue| {
        let dir = tempfile::tempdir().unwrap();
        let p = remote(&dir, false);
        let entries = seed(1, &["a", "b"], true);
        queue.append(&p, &entries).unwrap();
        let error = sync(&queue, &p, Prune::Always, Some(Duration::ZERO)).unwrap_err();
        assert!(matches!(error, SinkError::Git { .. }), "{error}");
        assert_eq!(
            queue.depth(&p),
            entries.len() as u64,
            "nothing acknowledged"
        );
        remote(&dir, true);
        sync(&queue, &p, Prune::Always, None).unwrap();
        assert_eq!(files(&p), [path("a"), path("b")]);
    });
}

#[test]
fn changes_for_a_destination_no_longer_configured_are_discarded_and_acknowledged() {
    each_queue(100, |queue| {
        let dir = tempfile::tempdir().unwrap();
        let p = remote(&dir, true);
        let mut gone = file("x", "1", None);
        if let Entry::File(change) = &mut gone {
            change.destination = "removed".into();
        }
        queue.append(&p, &[gone, file("a", "1", None)]).unwrap();
        let report = sync(&queue, &p, Prune::Always, None).unwrap();
        assert_eq!(report.discarded, 1);
        assert_eq!(files(&p), [path("a")]);
        assert_eq!(queue.depth(&p), 0);
    });
}

#[test]
fn changes_routed_before_the_base_folder_moved_are_discarded_not_written_in_the_old_one() {
    each_queue(100, |queue| {
        let dir = tempfile::tempdir().unwrap();
        let p = remote(&dir, true);
        // From a sibling folder, and from one inside the new folder (the
        // destination moved from `team/old` to `team`).
        let routed_in = |folder: &str| {
            let mut before = file("x", "1", None);
            if let Entry::File(change) = &mut before {
                change.path = format!("{folder}/ns/core/configmaps/x.yaml");
            }
            before
        };
        let (sibling, inner) = (routed_in("old-folder"), routed_in("team/old"));
        queue
            .append(&p, &[sibling, inner, file("a", "1", None)])
            .unwrap();
        let report = sync(&queue, &p, Prune::Never, None).unwrap();
        assert_eq!(report.discarded, 2);
        assert_eq!(files(&p), [path("a")]);
        assert_eq!(queue.depth(&p), 0);
    });
}

/// A worker of `p` that keeps its files, and its local repository's folder.
fn worker_of(
    queue: &Arc<dyn Queue>,
    p: &Partition,
    options: SinkOptions,
) -> (Worker, tempfile::TempDir) {
    let gitdir = tempfile::tempdir().unwrap();
    let (metrics, _) = Metrics::new();
    let worker = Worker::new(
        p.clone(),
        vec![folder(Prune::Never)],
        queue.clone(),
        gitdir.path(),
        options,
        metrics,
        Arc::new(Health::default()),
    )
    .unwrap();
    (worker, gitdir)
}

/// Asked to give its partition up with a batch staged (changes keep
/// arriving, so it never is between batches by itself), a worker reads
/// nothing more, commits and pushes what it staged, acknowledges it, and
/// only then gives the partition up.
#[test]
fn a_worker_asked_to_give_up_pushes_what_it_staged_first() {
    each_queue(100, |queue| {
        let dir = tempfile::tempdir().unwrap();
        let p = remote(&dir, true);
        let mut options = SinkOptions::new("test");
        options.batch.wait = Duration::from_secs(600);
        queue
            .append(&p, &[file("a", "1", None), file("b", "1", None)])
            .unwrap();
        let (mut worker, _gitdir) = worker_of(&queue, &p, options);
        // Asked at every turn of its loop: not at the first (nothing
        // read yet), then yes.
        let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = asked.clone();
        let signals = Signals {
            give_up: Some(Arc::new(move || {
                counted.fetch_add(1, Ordering::AcqRel) >= 1
            })),
            ..Signals::default()
        };
        let ended = worker.run(&signals);
        assert!(matches!(ended, Err(SinkError::GaveUp { .. })), "{ended:?}");
        assert_eq!(asked.load(Ordering::Acquire), 2, "asked once it was");
        assert_eq!(files(&p), [path("a"), path("b")]);
        assert_eq!(queue.depth(&p), 0, "what it pushed is acknowledged");
    });
}

/// Finishing while other replicas share the queue, a worker hands its
/// partition over: it pushes what it staged, not everything queued (the
/// leader may keep appending), and what it leaves is still queued.
#[test]
fn a_worker_finishing_with_others_hands_the_partition_over() {
    each_queue(100, |queue| {
        let dir = tempfile::tempdir().unwrap();
        let p = remote(&dir, true);
        queue
            .append(&p, &[file("a", "1", None), file("b", "1", None)])
            .unwrap();
        let (mut worker, _gitdir) = worker_of(&queue, &p, SinkOptions::new("test"));
        let signals = Signals {
            hand_over: true,
            ..Signals::default()
        };
        signals.finish.store(true, Ordering::Release);
        let ended = worker.run(&signals);
        assert!(matches!(ended, Err(SinkError::GaveUp { .. })), "{ended:?}");
        assert_eq!(queue.depth(&p), 2, "left for the next holder");
        drop(worker);
        sync(&queue, &p, Prune::Never, None).unwrap();
        assert_eq!(files(&p), [path("a"), path("b")], "and it pushes them");
    });
}

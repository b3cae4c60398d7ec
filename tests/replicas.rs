//! Several replicas of the daemon on a three-node NATS JetStream cluster
//! (JetStream replicas 3), mirroring one folder into twelve partitions
//! (four repositories, three branches each) while the folder keeps
//! changing: the replica that leads is killed mid-batch, a NATS node is
//! killed, a replica joins and takes partitions over, and a replica is
//! paused past its lease. Every change reaches Git, in order, once: no
//! file's history ever goes back, and every file ends at its last value.
//! And with the cluster as the source: a webhook on a replica that does
//! not lead still names the author of the leader's commit.

use crate::nats::Nats;
use crate::support::{Daemon, GitServer, git, http_get};
use crate::twelve::{BRANCHES, PARTITIONS, REPOS, configuration};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Config maps per namespace (one namespace per partition).
const MAPS: u64 = 4;
/// The replicas' lease, seconds: short, so that the test sees it lapse.
const LEASE: u64 = 6;

/// The folder the replicas follow, and the values written to it.
struct Source {
    dir: tempfile::TempDir,
    scratch: tempfile::TempDir,
}

impl Source {
    fn new() -> Source {
        let source = Source {
            dir: tempfile::tempdir().unwrap(),
            scratch: tempfile::tempdir().unwrap(),
        };
        for i in 0..PARTITIONS {
            std::fs::create_dir_all(source.dir.path().join(format!("n{i}"))).unwrap();
            for m in 0..MAPS {
                source.write(i, m, 0);
            }
        }
        source
    }

    /// Sets map `m` of namespace `n<i>` to `value`, whole (renamed into
    /// place: the folder source never reads half a file).
    fn write(&self, i: usize, m: u64, value: u64) {
        let text = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{m}\n  namespace: n{i}\ndata:\n  v: \"{value}\"\n"
        );
        let scratch = self.scratch.path().join(format!("n{i}-cm-{m}.yaml"));
        std::fs::write(&scratch, text).unwrap();
        std::fs::rename(&scratch, self.dir.path().join(format!("n{i}/cm-{m}.yaml"))).unwrap();
    }
}

fn path(i: usize, m: u64) -> String {
    format!("n{i}/core/configmaps/cm-{m}.yaml")
}

/// The value a file holds, from its text.
fn value(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.trim_start().starts_with("v:"))?;
    line.trim_start()[2..]
        .trim()
        .trim_matches(['\'', '"'])
        .parse()
        .ok()
}

/// Partition `i`'s repository and branch.
fn branch_of(gits: &[GitServer], i: usize) -> (PathBuf, &'static str) {
    (gits[i % REPOS].bare(), BRANCHES[i / REPOS])
}

/// The values of partition `i`'s maps at its branch's tip (none while it
/// has no such branch).
fn tip_values(gits: &[GitServer], i: usize) -> BTreeMap<u64, u64> {
    let (bare, branch) = branch_of(gits, i);
    let mut values = BTreeMap::new();
    for m in 0..MAPS {
        let out = std::process::Command::new("git")
            .current_dir(&bare)
            .args(["show", &format!("{branch}:{}", path(i, m))])
            .output()
            .unwrap();
        if let Some(v) = value(&String::from_utf8_lossy(&out.stdout)) {
            values.insert(m, v);
        }
    }
    values
}

/// Every value each file of partition `i` took, commit by commit, oldest
/// first.
fn histories(gits: &[GitServer], i: usize) -> BTreeMap<String, Vec<u64>> {
    let (bare, branch) = branch_of(gits, i);
    let log = git(
        &bare,
        &[
            "log",
            "--reverse",
            "-p",
            "--no-color",
            "--format=commit %H",
            branch,
        ],
    );
    let mut histories: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut file = String::new();
    for line in log.lines() {
        if let Some(name) = line.strip_prefix("+++ b/") {
            file = name.to_owned();
        } else if let Some(added) = line.strip_prefix('+')
            && let Some(v) = value(added)
        {
            histories.entry(file.clone()).or_default().push(v);
        }
    }
    histories
}

/// A replica: `plumbline run` on the shared NATS, its own state folder.
struct Replica {
    daemon: Daemon,
    address: String,
    _state: tempfile::TempDir,
}

fn replica(nats: &Nats, source: &Source, config: &Path) -> Replica {
    let (lease, url) = (LEASE.to_string(), nats.url());
    Replica::start(&[
        "--config".as_ref(),
        config.as_os_str(),
        "--source-dir".as_ref(),
        source.dir.path().as_os_str(),
        "--nats".as_ref(),
        url.as_ref(),
        "--nats-replicas".as_ref(),
        "3".as_ref(),
        "--nats-lease".as_ref(),
        lease.as_ref(),
        "--log".as_ref(),
        "plumbline::queue=info,plumbline::daemon=info,warn".as_ref(),
    ])
}

impl Replica {
    /// `plumbline run` with `args` and a state folder of its own.
    fn start(args: &[&std::ffi::OsStr]) -> Replica {
        let state = tempfile::tempdir().unwrap();
        let mut args = args.to_vec();
        args.extend(["--state-dir".as_ref(), state.path().as_os_str()]);
        let daemon = Daemon::start(&args);
        let address = daemon.address();
        Replica {
            daemon,
            address,
            _state: state,
        }
    }

    fn metrics(&self) -> String {
        if std::net::TcpStream::connect(&self.address).is_err() {
            panic!("a replica is gone; it said:\n{}", self.daemon.stderr());
        }
        http_get(&self.address, "/metrics").1
    }

    /// How many partitions it holds, and how many of those have entries
    /// waiting (a batch under way).
    fn held(&self) -> (usize, usize) {
        let metrics = self.metrics();
        let series = |name: &str| -> BTreeMap<String, f64> {
            metrics
                .lines()
                .filter_map(|l| l.strip_prefix(name))
                .filter_map(|l| {
                    let (labels, v) = l.rsplit_once(' ')?;
                    Some((labels.to_owned(), v.parse().ok()?))
                })
                .collect()
        };
        let (held, depth) = (
            series("plumbline_partition_held"),
            series("plumbline_queue_depth"),
        );
        let mine: Vec<&String> = held
            .iter()
            .filter(|(_, v)| **v == 1.0)
            .map(|(l, _)| l)
            .collect();
        let busy = mine
            .iter()
            .filter(|l| depth.get(**l).is_some_and(|d| *d > 0.0))
            .count();
        (mine.len(), busy)
    }

    fn leads(&self) -> bool {
        self.metrics()
            .lines()
            .any(|l| l == "plumbline_source_leading 1")
    }
}

/// Polls `probe` every 50 ms for up to `limit`.
fn wait_up_to<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes a new value to one map of every namespace every 150 ms until
/// told to stop; the last value written.
fn writer(
    source: Arc<Source>,
    stop: Arc<AtomicBool>,
    last: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut value = 0;
        while !stop.load(Ordering::Acquire) {
            value += 1;
            for i in 0..PARTITIONS {
                source.write(i, value % MAPS, value);
            }
            last.store(value, Ordering::Release);
            std::thread::sleep(Duration::from_millis(150));
        }
    })
}

#[test]
fn three_replicas_lose_nothing_and_repeat_nothing_through_kills_a_newcomer_and_a_pause() {
    let mut nats = Nats::cluster(3);
    let gits: Vec<GitServer> = (0..REPOS).map(|_| GitServer::start()).collect();
    let source = Arc::new(Source::new());
    let work = tempfile::tempdir().unwrap();
    let config_file = work.path().join("mirror.yaml");
    let urls: Vec<String> = gits.iter().map(GitServer::url).collect();
    std::fs::write(&config_file, configuration(&urls)).unwrap();
    let mut replicas: Vec<Replica> = (0..3)
        .map(|_| replica(&nats, &source, &config_file))
        .collect();

    // The seed reaches all twelve branches, the partitions spread.
    wait_up_to("the seed in every branch", Duration::from_secs(120), || {
        (0..PARTITIONS)
            .all(|i| tip_values(&gits, i).len() == MAPS as usize)
            .then_some(())
    });
    let spread = wait_up_to("the partitions to spread", Duration::from_secs(60), || {
        let held: Vec<usize> = replicas.iter().map(|r| r.held().0).collect();
        (held.iter().sum::<usize>() == PARTITIONS && held.iter().all(|h| *h == 4)).then_some(held)
    });
    assert_eq!(spread, [4, 4, 4]);

    let (stop, last) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let writing = writer(source.clone(), stop.clone(), last.clone());

    // The leader is killed while a partition it holds has entries waiting.
    let leader = wait_up_to("a leader", Duration::from_secs(30), || {
        replicas.iter().position(Replica::leads)
    });
    let started = Instant::now();
    while replicas[leader].held().1 == 0 && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mid_batch = replicas[leader].held().1 > 0;
    replicas.remove(leader).daemon.kill();
    assert!(mid_batch, "the leader never had a batch under way");

    // The others take its partitions and the lead, within the lease.
    wait_up_to(
        "the survivors to hold everything",
        Duration::from_secs(60),
        || {
            let held: usize = replicas.iter().map(|r| r.held().0).sum();
            (held == PARTITIONS && replicas.iter().any(Replica::leads)).then_some(())
        },
    );

    // A NATS node goes; a replica joins and takes partitions over.
    nats.kill(1);
    replicas.push(replica(&nats, &source, &config_file));
    let started = Instant::now();
    loop {
        let held: Vec<usize> = replicas.iter().map(|r| r.held().0).collect();
        // Its even share is 4; it gets them as the others, over their
        // share, push what they staged and give theirs up.
        if held == [4, 4, 4] {
            break;
        }
        if started.elapsed() > Duration::from_secs(90) {
            let said: Vec<String> = replicas
                .iter()
                .map(|r| {
                    let text = r.daemon.stderr();
                    let lines: Vec<&str> = text
                        .lines()
                        .filter(|l| {
                            !l.starts_with("warning: ") && !l.contains("is claimed by another")
                        })
                        .collect();
                    lines.join("\n")
                })
                .collect();
            panic!(
                "the newcomer never took its share: {held:?}\n{}",
                said.join("\n\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // A replica that does not lead, paused past its lease, pushes nothing
    // when it wakes: its claims went to the others.
    let paused = replicas
        .iter()
        .position(|r| !r.leads() && r.held().0 > 0)
        .unwrap();
    replicas[paused].daemon.signal("STOP");
    std::thread::sleep(Duration::from_secs(3 * LEASE));
    replicas[paused].daemon.signal("CONT");
    wait_up_to(
        "the woken replica to see its claims lapsed",
        Duration::from_secs(60),
        || {
            replicas[paused]
                .daemon
                .stderr()
                .contains("lapsed")
                .then_some(())
        },
    );

    // Told to stop while the leader keeps appending, it hands its
    // partitions over and exits: it does not wait for a queue that keeps
    // filling.
    let mut leaving = replicas.remove(paused);
    leaving.daemon.signal("TERM");
    let status = leaving.daemon.exited();
    assert!(status.success(), "{status}: {}", leaving.daemon.stderr());

    // The last values reach every branch.
    stop.store(true, Ordering::Release);
    writing.join().unwrap();
    let last = last.load(Ordering::Acquire);
    let finals: Vec<u64> = (0..MAPS)
        .map(|m| (last + 1..last + 1 + MAPS).find(|v| v % MAPS == m).unwrap())
        .collect();
    for (m, v) in finals.iter().enumerate() {
        for i in 0..PARTITIONS {
            source.write(i, m as u64, *v);
        }
    }
    let want: BTreeMap<u64, u64> = finals
        .iter()
        .enumerate()
        .map(|(m, v)| (m as u64, *v))
        .collect();
    wait_up_to(
        "the last values in every branch",
        Duration::from_secs(120),
        || {
            (0..PARTITIONS)
                .all(|i| tip_values(&gits, i) == want)
                .then_some(())
        },
    );

    // No file's history repeats a value or goes back.
    for i in 0..PARTITIONS {
        for (file, values) in histories(&gits, i) {
            assert!(
                values.windows(2).all(|w| w[0] < w[1]),
                "{file} in partition {i} went {values:?}"
            );
        }
    }
    for replica in &replicas {
        assert!(
            !replica.daemon.stderr().contains("panicked"),
            "{}",
            replica.daemon.stderr()
        );
    }
}

/// A replica following the test API server's cluster by the rules in
/// `config`, with its webhooks, on `nats`.
fn cluster_replica(nats: &Nats, api: &crate::apiserver::ApiServer, config: &Path) -> Replica {
    let (kubeconfig, url) = (api.kubeconfig(), nats.url());
    Replica::start(&[
        "--kubeconfig".as_ref(),
        kubeconfig.as_os_str(),
        "--config".as_ref(),
        config.as_os_str(),
        "--nats".as_ref(),
        url.as_ref(),
        "--audit-webhook".as_ref(),
        "--admission-webhook".as_ref(),
        "--log".as_ref(),
        "warn,plumbline::change=debug".as_ref(),
    ])
}

/// The change to `path` is followed from the leader's routing, through
/// the queue, to the commit that carries it and its push, by its trace,
/// on whichever replica wrote it.
fn followed_across_the_queue(replicas: &[&Replica], path: &str, repo: &GitServer) {
    let said: Vec<String> = replicas.iter().map(|r| r.daemon.stderr()).collect();
    let queued = said[0]
        .lines()
        .find(|l| l.contains("queued") && l.contains(path))
        .unwrap_or_else(|| panic!("the leader routed {path}:\n{}", said[0]));
    let trace = queued
        .split("trace=\"")
        .nth(1)
        .and_then(|rest| rest.get(..32))
        .unwrap_or_else(|| panic!("a trace in {queued}"));
    let commit = git(
        &repo.bare(),
        &["log", "-1", "--format=%H", "main", "--", path],
    );
    let commit = format!("commit={}", commit.trim());
    let wrote = said
        .iter()
        .find(|s| {
            s.lines()
                .any(|l| l.contains("committed") && l.contains(trace))
        })
        .unwrap_or_else(|| panic!("no replica committed {trace}:\n{}", said.join("\n")));
    let line = |what: &str| {
        wrote.lines().any(|l| {
            l.contains(what) && l.contains(&commit) && (what == "pushed" || l.contains(trace))
        })
    };
    assert!(line("committed"), "{trace} in {commit}:\n{wrote}");
    assert!(line("pushed"), "{commit} pushed:\n{wrote}");
}

/// Every replica serves the webhooks, but one reads the cluster: what the
/// API server told a replica that does not lead still names the author of
/// the commit the leader makes.
#[test]
fn a_fact_told_to_a_replica_that_does_not_lead_names_the_author_of_the_leaders_commit() {
    let nats = Nats::start();
    let api = crate::apiserver::ApiServer::start();
    let repo = GitServer::start();
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("rules.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: mirror.plumbline.dev/v1alpha1\nkind: GitRepoConfig\nmetadata: {{name: gitops, namespace: plumbline}}\n\
             spec: {{repoUrl: '{}', allowedBranches: [main]}}\n---\n\
             apiVersion: mirror.plumbline.dev/v1alpha1\nkind: GitDestination\nmetadata: {{name: live, namespace: plumbline}}\n\
             spec: {{repoRef: {{name: gitops}}, branch: main, baseFolder: live}}\n---\n\
             apiVersion: mirror.plumbline.dev/v1alpha1\nkind: ClusterWatchRule\nmetadata: {{name: maps}}\n\
             spec:\n  destinationRef: {{name: live, namespace: plumbline}}\n  rules:\n  - {{scope: Namespaced, resources: [configmaps]}}\n",
            repo.url()
        ),
    )
    .unwrap();
    let leader = cluster_replica(&nats, &api, &config);
    wait_up_to("the first replica to lead", Duration::from_secs(60), || {
        leader.leads().then_some(())
    });
    let follower = cluster_replica(&nats, &api, &config);
    wait_up_to("the second to wait", Duration::from_secs(60), || {
        follower
            .daemon
            .stderr()
            .contains("waiting to lead")
            .then_some(())
    });
    let author = |path: &str| {
        git(
            &repo.bare(),
            &["log", "-1", "--format=%an", "main", "--", path],
        )
        .trim()
        .to_owned()
    };

    // The audit webhook, on the follower only.
    api.send_audit_to(&format!("http://{}/audit-webhook", follower.address));
    let made = api.kubectl_as(
        "bob",
        &["create", "configmap", "bobs", "--from-literal=a=1"],
    );
    assert!(made.status.success());
    const BOBS: &str = "live/default/core/configmaps/bobs.yaml";
    wait_up_to("bob's config map", Duration::from_secs(60), || {
        repo.tree().contains_key(BOBS).then_some(())
    });
    assert_eq!(author(BOBS), "bob", "{}", leader.daemon.stderr());
    followed_across_the_queue(&[&leader, &follower], BOBS, &repo);

    // The admission webhook, on the follower only: the audit one is
    // pointed nowhere that answers.
    api.send_audit_to("http://127.0.0.1:9/audit-webhook");
    api.send_admission_to(&format!(
        "http://{}/process-validating-webhook",
        follower.address
    ));
    let patch = [
        "patch",
        "configmap",
        "bobs",
        "--type=merge",
        "-p",
        r#"{"data":{"a":"2"}}"#,
    ];
    assert!(api.kubectl_as("carol", &patch).status.success());
    wait_up_to("carol's change", Duration::from_secs(60), || {
        repo.tree().get(BOBS)?.contains("a: \"2\"").then_some(())
    });
    assert_eq!(author(BOBS), "carol", "{}", leader.daemon.stderr());
}

/// While NATS is out of reach, `/readyz` says so (nothing can be queued,
/// claimed or pushed), naming the server with its password hidden; and a
/// stop then ends the run at once and cleanly, with a change read but
/// not queued (the next replica to lead reads it again).
#[test]
fn while_nats_is_out_of_reach_readyz_says_so_and_a_stop_ends_cleanly() {
    let mut nats = Nats::start();
    let (source, work) = (Source::new(), tempfile::tempdir().unwrap());
    let url = nats.url().replace("nats://", "nats://bob:S3CRETPW@");
    let repo = work.path().join("mirror.git");
    let replica = Replica::start(&[
        "--source-dir".as_ref(),
        source.dir.path().as_os_str(),
        "--repo".as_ref(),
        repo.as_os_str(),
        "--nats".as_ref(),
        url.as_ref(),
    ]);
    let readyz = || http_get(&replica.address, "/readyz");
    wait_up_to("the queue to be reached", Duration::from_secs(60), || {
        readyz().1.contains("[+] queue: ok").then_some(())
    });
    nats.kill(0);
    let (status, said) = wait_up_to(
        "/readyz to say NATS is gone",
        Duration::from_secs(60),
        || {
            let (status, said) = readyz();
            said.contains("[-] queue: NATS").then_some((status, said))
        },
    );
    assert_eq!(status, 503, "{said}");
    // A change the source reads now cannot be queued; the stop must not
    // wait for NATS, nor call that a failure.
    source.write(0, 0, 1);
    std::thread::sleep(Duration::from_secs(1));
    // Every call to a server that is gone waits out a timeout (5 s), and
    // a stop makes several in turn (the lead, the share, the claim, the
    // acknowledgement): 40 s and more before the stop abandoned them.
    let mut replica = replica;
    replica.daemon.signal("TERM");
    let status = wait_up_to("the replica to stop", Duration::from_secs(20), || {
        replica.daemon.try_exited()
    });
    let logged = replica.daemon.stderr();
    assert!(status.success(), "{status}: {logged}");
    for text in [&said, &logged] {
        assert!(!text.contains("S3CRETPW"), "{text}");
    }
}

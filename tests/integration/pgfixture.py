#!/usr/bin/python3
"""The integration suite's PostgreSQL cluster (CTest fixture referral_pg).

    pgfixture.py setup    start a private cluster, apply the migrations with
                          `referrald --migrate`, record the cluster's env file
                          in $REFERRAL_PGFIXTURE
    pgfixture.py cleanup  remove the cluster recorded there

The cluster lives in a fresh mktemp directory under /tmp rather than in the
build tree: as root, scripts/pgcluster.sh runs PostgreSQL as the postgres
user, which must be able to traverse every parent of the directory.
"""

import os
import shutil
import sys
import tempfile

import harness


def remove_recorded():
    path = harness.FIXTURE_FILE
    if not os.path.exists(path):
        return
    with open(path) as f:
        env_file = f.read().strip()
    cluster_dir = os.path.dirname(env_file)
    if os.path.isdir(cluster_dir):
        harness.remove_cluster(cluster_dir)
    os.unlink(path)


def setup():
    # A cluster left over by an interrupted run is removed first.
    remove_recorded()
    # Logs of the previous run go; this run's stay for inspection.
    shutil.rmtree(harness.TEST_TMP, ignore_errors=True)
    cluster_dir = tempfile.mkdtemp(prefix="referral-it-pg.")
    # Recorded before starting, so that cleanup finds it whatever fails next.
    os.makedirs(os.path.dirname(harness.FIXTURE_FILE), exist_ok=True)
    tmp = harness.FIXTURE_FILE + ".tmp"
    with open(tmp, "w") as f:
        f.write(os.path.join(cluster_dir, "env") + "\n")
    os.replace(tmp, harness.FIXTURE_FILE)
    env_file = harness.start_cluster(cluster_dir)
    env = harness.read_env_file(env_file)
    harness.migrate(env["REFERRAL_DSN"])
    print(f"cluster {cluster_dir} ready; env file recorded in {harness.FIXTURE_FILE}")


def cleanup():
    remove_recorded()
    print("cluster removed")


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in ("setup", "cleanup"):
        print("usage: pgfixture.py setup|cleanup", file=sys.stderr)
        return 2
    if sys.argv[1] == "setup":
        setup()
    else:
        cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

# parallel-ssh's peer run for the SSH benchmarks (hgauto-ssh/benches/ssh_vs_peers.rs and
# hgauto-py/benches/python_vs_peers.py): `true` on every USER@HOST:PORT with KEY, timed
# inside the interpreter. Prints "wall_ms cpu_ms".
#   python pssh_true.py USER KEY HOST:PORT...
import sys, time, resource
from pssh.clients import ParallelSSHClient
from pssh.config import HostConfig
user, key = sys.argv[1], sys.argv[2]
targets = [t.split(':') for t in sys.argv[3:]]
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
t, c = time.perf_counter(), cpu()
client = ParallelSSHClient([h for h, _ in targets], user=user, pkey=key, pool_size=len(targets),
                           host_config=[HostConfig(port=int(p)) for _, p in targets])
out = client.run_command('true')
client.join(out)
assert all(o.exit_code == 0 for o in out), [o.exit_code for o in out]
print(f"{(time.perf_counter() - t) * 1e3:.3f} {(cpu() - c) * 1e3:.3f}")

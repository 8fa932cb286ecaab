# thr.py PIDS SECONDS : per-thread-name CPU seconds (utime+stime) over a window, per node
import os,sys,time,collections
pids=sys.argv[1].split(','); secs=float(sys.argv[2]); hz=os.sysconf('SC_CLK_TCK')
def snap():
    out={}
    for p in pids:
        for t in os.listdir(f'/proc/{p}/task'):
            try:
                s=open(f'/proc/{p}/task/{t}/stat').read()
            except OSError: continue
            name=s[s.index('(')+1:s.rindex(')')]
            f=s[s.rindex(')')+2:].split()
            out[(p,t)]=(name,int(f[11])+int(f[12]))
    return out
a=snap(); time.sleep(secs); b=snap()
per=collections.Counter(); tot=collections.Counter()
for k,(name,v) in b.items():
    d=v-a.get(k,(name,0))[1]
    n=name.rstrip('0123456789') if name.startswith('sled-io') else name
    per[(k[0],n)]+=d/hz; tot[k[0]]+=d/hz
for p in pids:
    print(f'pid {p}: {tot[p]:.2f} CPU-s in {secs:.0f}s:', ', '.join(f'{n} {v:.2f}' for (pp,n),v in sorted(per.items(), key=lambda x:-x[1]) if pp==p and v>=0.01))

# steps.py FILE...: one line per step of each crossnode result (phase, target and achieved rate,
# p50/p99 in ms, server and load generator CPU-seconds, steal seconds, pass)
import json,sys
for f in sys.argv[1:]:
  d=json.load(open(f))
  print(f)
  for s in d['steps']:
    print('  %-16s tgt %6.0f ach %7.1f p50 %6.2f p99 %7.2f srv %5.2f lg %5.2f st %4.2f %s'%(s['phase'],s['target_emits_per_s'],s['achieved_emits_per_s'],s['p50_ms'],s['p99_ms'],s['server_cpu_s'],s['loadgen_cpu_s'],s.get('steal_s',0),s['pass']))

# incl2.py SCRIPT: share of the nodes' samples whose stack holds each name (perf script -F pid,ip,sym --pid <nodes>)
import collections,sys
samples=[s for s in open(sys.argv[1]).read().split('\n\n') if s.strip()]
keys=['sm::worker','redo::write','put_change','changes_of','apply_entry','Deliverer','release_deferred','Pump<S>::poll','ws::run','__x64_sys_sendto','http::serve','RaftCore','replication','network::','recent::','Command as core::clone::Clone','malloc','_int_malloc','sled::']
c=collections.Counter()
for s in samples:
    body=s.split('\n',1)[1] if '\n' in s else ''
    for k in keys:
        if k in body: c[k]+=1
print('node samples',len(samples))
for k in keys: print('%6.1f%%  %s'%(100*c[k]/len(samples),k))

#!/usr/bin/env python3
"""Compares two runs' metrics.jsonl field by field (nested fields flattened) and lists the fields
that differ: `python3 scripts/compare_metrics.py A/metrics.jsonl B/metrics.jsonl`. The
restructure check: every field equal but train_seconds, eval_seconds and images_per_sec."""
import json, sys
def flat(d,p=''):
    if isinstance(d,dict):
        for k,v in d.items(): yield from flat(v,p+'.'+k if p else k)
    elif isinstance(d,list) and d and isinstance(d[0],(dict,list)):
        for i,v in enumerate(d): yield from flat(v,f'{p}[{i}]')
    else: yield p,d
a=[json.loads(l) for l in open(sys.argv[1])]; b=[json.loads(l) for l in open(sys.argv[2])]
assert len(a)==len(b),(len(a),len(b))
diff=set(); same=0
for x,y in zip(a,b):
    fx,fy=dict(flat(x)),dict(flat(y))
    for k in set(fx)|set(fy):
        if fx.get(k)!=fy.get(k): diff.add(k)
        else: same+=1
print(len(a),"records;",same,"fields equal; differing:",sorted(diff))

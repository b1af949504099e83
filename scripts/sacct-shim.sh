#!/usr/bin/env bash
# advnets sacct shim -- stand-in for `sacct` on the localhost test cluster (scripts/slurm-localhost.sh),
# which runs without accounting (no slurmdbd), so the real sacct has nothing to report.
#
# submitit polls `sacct -o JobID,State,NodeList --parsable2 -j ID [-j ID ...]` to learn job states; without
# an answer it can never see CANCELLED/FAILED/TIMEOUT/PREEMPTED and `job.result()` waits forever.
# This answers from `scontrol -o show job`, which keeps finished jobs for MinJobAge seconds.
#
# Understood: -j/--jobs ID[,ID...] (repeatable; none = all jobs slurmctld knows), -o/--format FIELDS
# (default JobID,State,NodeList), -n/--noheader, -p/--parsable (trailing '|'); -P/--parsable2, -X and
# other flags are accepted and ignored. Output is always '|'-separated.
# Array jobs: one line per task, the pending remainder expanded (12_3, 12_4, ...), like sacct does.
set -uo pipefail

ids=() format=JobID,State,NodeList header=1 trail=
while [ $# -gt 0 ]; do
  case $1 in
    -j|--jobs) ids+=("${2:-}"); shift ;;
    --jobs=*) ids+=("${1#*=}") ;;
    -j?*) ids+=("${1#-j}") ;;
    -o|--format) format=${2:-$format}; shift ;;
    --format=*) format=${1#*=} ;;
    -o?*) format=${1#-o} ;;
    -n|--noheader) header=0 ;;
    -p|--parsable) trail='|' ;;
    # options that take a value we do not use: skip the value too
    -S|--starttime|-E|--endtime|-u|--user|-A|--account|-s|--state|-M|--clusters|-r|--partition|-N|--nodelist|--name|-i|--nnodes|-k|--timelimit-min|-K|--timelimit-max|-q|--qos|-T|--truncate-time) shift ;;
  esac
  shift
done

list_jobs() {  # one `scontrol -o show job` record per line for the requested ids (all jobs when none)
  if [ ${#ids[@]} -eq 0 ]; then scontrol -o show job 2>/dev/null; return 0; fi
  local id
  for id in $(printf '%s\n' "${ids[@]}" | tr ',' ' '); do
    scontrol -o show job "$id" 2>/dev/null
  done
  return 0
}

list_jobs | awk -v format="$format" -v header="$header" -v trail="$trail" '
BEGIN {
  # sacct field (lower case) -> canonical header | scontrol key ("=" prefix: computed below)
  split("jobid:JobID:=id jobidraw:JobIDRaw:JobId state:State:JobState nodelist:NodeList:=nodes " \
        "jobname:JobName:JobName partition:Partition:Partition exitcode:ExitCode:ExitCode " \
        "elapsed:Elapsed:RunTime start:Start:StartTime end:End:EndTime submit:Submit:SubmitTime " \
        "timelimit:Timelimit:TimeLimit reason:Reason:Reason restarts:Restarts:Restarts " \
        "user:User:=user workdir:WorkDir:WorkDir alloccpus:AllocCPUS:NumCPUS ncpus:NCPUS:NumCPUS " \
        "nnodes:NNodes:NumNodes priority:Priority:Priority account:Account:Account qos:QOS:QOS", spec, " ")
  for (i in spec) { split(spec[i], p, ":"); canon[p[1]] = p[2]; key[p[1]] = p[3] }
  nf = split(format, want, ",")
  line = ""
  for (i = 1; i <= nf; i++) {
    f = tolower(want[i]); sub(/%.*/, "", f); want[i] = f   # drop sacct width suffixes like JobName%30
    line = line (i > 1 ? "|" : "") (f in canon ? canon[f] : want[i])
  }
  if (header == 1) print line trail
}
function emit(id,   i, f, k, v, out) {
  out = ""
  for (i = 1; i <= nf; i++) {
    f = want[i]; k = key[f]
    if (k == "=id") v = id
    else if (k == "=nodes") v = (rec["NodeList"] == "" || rec["NodeList"] == "(null)") ? "None assigned" : rec["NodeList"]
    else if (k == "=user") { v = rec["UserId"]; sub(/\(.*/, "", v) }
    else v = (k == "" ? "" : rec[k])
    out = out (i > 1 ? "|" : "") v
  }
  print out trail
}
{
  # parse "Key=value Key=value ..."; a token without "=" belongs to the previous value (values with spaces)
  split("", rec); last = ""
  for (t = 1; t <= NF; t++) {
    eq = index($t, "=")
    if (eq > 1) { last = substr($t, 1, eq - 1); rec[last] = substr($t, eq + 1) }
    else if (last != "") rec[last] = rec[last] " " $t
  }
  if (!("JobId" in rec)) next
  if (rec["ArrayJobId"] == "" || rec["ArrayTaskId"] == "") { emit(rec["JobId"]); next }
  tasks = rec["ArrayTaskId"]; sub(/%.*/, "", tasks)       # e.g. 7, 3-9%2, 1,4-6, 0-10:2
  n = split(tasks, part, ",")
  for (a = 1; a <= n; a++) {
    step = 1; r = part[a]
    if (index(r, ":")) { step = substr(r, index(r, ":") + 1) + 0; r = substr(r, 1, index(r, ":") - 1) }
    lo = r; hi = r
    if (index(r, "-")) { lo = substr(r, 1, index(r, "-") - 1); hi = substr(r, index(r, "-") + 1) }
    for (x = lo + 0; x <= hi + 0; x += (step > 0 ? step : 1)) emit(rec["ArrayJobId"] "_" x)
  }
}'
exit 0

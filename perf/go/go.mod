module bobbin/perf/go

go 1.19

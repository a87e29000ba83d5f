// Package bench holds DelugeFS's end-to-end benchmarks: `make bench`, or
// `go test -run '^$' -bench . ./bench/...`.
//
// Every figure is printed beside a reference measured in the same run, as a
// ratio: file system figures beside a minimal passthrough FUSE file system on
// cgofuse (bench/passthrough, the FUSE ceiling on this machine), transfer
// figures beside a stock BitTorrent client on the same data. Metrics:
//
//	MB/s               throughput of DelugeFS (b.SetBytes)
//	ref-MB/s           the reference's throughput in the same run
//	x-passthrough      DelugeFS / passthrough (higher is better)
//	files/s, iops      operation rates
//	p50-us/file, p99-us/file, max-ms/file
//	                   one small file's create+write+close, as the writer
//	                   sees it (stalls: a checkpoint, a merge)
//	MiB-rss            resident memory of the delugefs process
//
// DelugeFS runs as a child process (the delugefs binary, built by the
// benchmark), as a user runs it; the passthrough runs in the benchmark
// process.
package bench

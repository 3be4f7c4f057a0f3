// Command libkv-bench measures Go docker/libkv (Debian's golang-github-docker-libkv-dev, the
// library kv replaces) with the workload of `kvctl bench`, and prints the same JSON lines with
// "impl": "libkv", so that scripts/bench-libkv can set it beside kv on the same servers.
//
// Workload, as kvctl bench's: 64-byte values; put cycles over --keys keys per run; get and
// exists read prefilled keys; list reads a directory of 100 keys; cas keeps one key per task,
// each AtomicPut building on the task's previous one; delete removes each prefilled key once.
// Values are ASCII (libkv's etcd store sends values as strings).
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"encoding/json"

	"github.com/docker/libkv"
	"github.com/docker/libkv/store"
	"github.com/docker/libkv/store/etcd"
	"github.com/docker/libkv/store/zookeeper"
)

func value(i uint64) []byte {
	return []byte(strings.Repeat("x", 56) + fmt.Sprintf("%08d", i%100000000))
}

type sample struct {
	micros  []int64
	errors  int
	elapsed time.Duration
}

func (s *sample) percentile(p float64) int64 {
	if len(s.micros) == 0 {
		return 0
	}
	i := int(float64(len(s.micros)-1) * p)
	return s.micros[i]
}

// measure runs op on `conc` goroutines until the duration or the op budget is used up.
func measure(conc int, d time.Duration, budget int64, op func(task int, i uint64) error) sample {
	var mu sync.Mutex
	var total sample
	var done int64
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for t := 0; t < conc; t++ {
		wg.Add(1)
		go func(task int) {
			defer wg.Done()
			var local []int64
			errs := 0
			for i := uint64(0); time.Now().Before(deadline); i++ {
				if budget > 0 && atomic.AddInt64(&done, 1) > budget {
					break
				}
				t0 := time.Now()
				if err := op(task, i); err != nil {
					errs++
					if errs <= 3 {
						fmt.Fprintf(os.Stderr, "libkv-bench: %v\n", err)
					}
					continue
				}
				local = append(local, time.Since(t0).Microseconds())
			}
			mu.Lock()
			total.micros = append(total.micros, local...)
			total.errors += errs
			mu.Unlock()
		}(t)
	}
	wg.Wait()
	total.elapsed = time.Since(start)
	sort.Slice(total.micros, func(a, b int) bool { return total.micros[a] < total.micros[b] })
	return total
}

func main() {
	backend := flag.String("store", "", "etcd or zookeeper")
	addr := flag.String("addr", "", "host:port of the server")
	ops := flag.String("ops", "put,get,exists,cas,list,delete", "operations")
	concs := flag.String("concurrency", "1,16", "goroutines per run")
	duration := flag.Duration("duration", 2*time.Second, "length of each run")
	keys := flag.Int("keys", 1000, "keys per put/get/exists/delete run")
	run := flag.String("run", strconv.FormatInt(time.Now().UnixNano(), 36), "run id (key prefix)")
	flag.Parse()

	var kind store.Backend
	name := *backend
	switch *backend {
	case "etcd":
		etcd.Register()
		kind = store.ETCD
	case "zookeeper":
		zookeeper.Register()
		kind = store.ZK
	default:
		fmt.Fprintln(os.Stderr, "libkv-bench: --store etcd|zookeeper")
		os.Exit(2)
	}
	kv, err := libkv.NewStore(kind, []string{*addr}, &store.Config{ConnectionTimeout: 10 * time.Second})
	if err != nil {
		fmt.Fprintf(os.Stderr, "libkv-bench: %v\n", err)
		os.Exit(3)
	}
	root := "kvbench-libkv/" + *run
	nkeys := uint64(*keys)
	var dirs []string
	for _, op := range strings.Split(*ops, ",") {
		for _, cs := range strings.Split(*concs, ",") {
			conc, _ := strconv.Atoi(cs)
			dir := fmt.Sprintf("%s/%s-c%d", root, op, conc)
			dirs = append(dirs, dir)
			keyOf := func(task int, i uint64) string {
				return fmt.Sprintf("%s/%d", dir, (uint64(task)*7919+i)%nkeys)
			}
			var fn func(task int, i uint64) error
			budget := int64(0)
			switch op {
			case "put":
				fn = func(task int, i uint64) error { return kv.Put(keyOf(task, i), value(i), nil) }
			case "get", "exists", "delete":
				for k := uint64(0); k < nkeys; k++ {
					if err := kv.Put(fmt.Sprintf("%s/%d", dir, k), value(0), nil); err != nil {
						fmt.Fprintf(os.Stderr, "libkv-bench: setup: %v\n", err)
						os.Exit(1)
					}
				}
				switch op {
				case "get":
					fn = func(task int, i uint64) error { _, err := kv.Get(keyOf(task, i)); return err }
				case "exists":
					fn = func(task int, i uint64) error {
						found, err := kv.Exists(keyOf(task, i))
						if err == nil && !found {
							err = fmt.Errorf("%s is missing", keyOf(task, i))
						}
						return err
					}
				default:
					var next uint64
					budget = int64(nkeys)
					fn = func(int, uint64) error {
						return kv.Delete(fmt.Sprintf("%s/%d", dir, atomic.AddUint64(&next, 1)-1))
					}
				}
			case "list":
				for k := 0; k < 100; k++ {
					if err := kv.Put(fmt.Sprintf("%s/%03d", dir, k), value(0), nil); err != nil {
						fmt.Fprintf(os.Stderr, "libkv-bench: setup: %v\n", err)
						os.Exit(1)
					}
				}
				fn = func(int, uint64) error {
					pairs, err := kv.List(dir)
					if err == nil && len(pairs) != 100 {
						err = fmt.Errorf("listed %d keys, not 100", len(pairs))
					}
					return err
				}
			case "cas":
				last := make([]*store.KVPair, conc)
				for t := 0; t < conc; t++ {
					key := fmt.Sprintf("%s/%d", dir, t)
					if err := kv.Put(key, value(0), nil); err != nil {
						fmt.Fprintf(os.Stderr, "libkv-bench: setup: %v\n", err)
						os.Exit(1)
					}
					if last[t], err = kv.Get(key); err != nil {
						fmt.Fprintf(os.Stderr, "libkv-bench: setup: %v\n", err)
						os.Exit(1)
					}
				}
				fn = func(task int, i uint64) error {
					key := fmt.Sprintf("%s/%d", dir, task)
					ok, pair, err := kv.AtomicPut(key, value(i+1), last[task], nil)
					if err == nil && !ok {
						err = fmt.Errorf("cas of %s failed", key)
					}
					if err == nil {
						last[task] = pair
					}
					return err
				}
			default:
				fmt.Fprintf(os.Stderr, "libkv-bench: no op %q\n", op)
				os.Exit(2)
			}
			s := measure(conc, *duration, budget, fn)
			line, _ := json.Marshal(map[string]interface{}{
				"impl": "libkv", "backend": name, "op": op, "n": len(s.micros),
				"concurrency": conc,
				"ops_per_s":   float64(int64(float64(len(s.micros))/s.elapsed.Seconds()*10)) / 10,
				"p50_us":      s.percentile(0.50), "p99_us": s.percentile(0.99), "errors": s.errors,
			})
			fmt.Println(string(line))
		}
	}
	// Each run's directory holds keys only (libkv's ZooKeeper DeleteTree cannot remove nested
	// directories, nor the directory itself).
	for _, dir := range dirs {
		if err := kv.DeleteTree(dir); err != nil && err != store.ErrKeyNotFound {
			fmt.Fprintf(os.Stderr, "libkv-bench: cleanup of %s: %v\n", dir, err)
		}
		_ = kv.Delete(dir)
	}
	_ = kv.Delete(root)
	kv.Close()
}

package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's collectors, registered on Options.Registry.
type metrics struct {
	requests     *prometheus.CounterVec   // by endpoint and code
	duration     *prometheus.HistogramVec // by endpoint
	authFailures prometheus.Counter
	volumes      prometheus.Gauge
	packObjects  prometheus.Counter
	packBytes    prometheus.Counter
	notices      prometheus.Counter
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "delugefs_api_requests_total",
			Help: "HTTP API requests by endpoint and status code.",
		}, []string{"endpoint", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "delugefs_api_request_duration_seconds",
			Help:    "Time to answer an HTTP API request, by endpoint.",
			Buckets: []float64{.001, .005, .02, .1, .5, 2, 10, 60},
		}, []string{"endpoint"}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "delugefs_api_auth_failures_total",
			Help: "Requests refused with 401.",
		}),
		volumes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "delugefs_api_volumes",
			Help: "Volumes registered on the API server.",
		}),
		packObjects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "delugefs_api_git_pack_objects_total",
			Help: "Git objects sent in upload-pack responses.",
		}),
		packBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "delugefs_api_git_pack_bytes_total",
			Help: "Bytes of pack data sent in upload-pack responses.",
		}),
		notices: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "delugefs_api_notices_total",
			Help: "Head notices accepted from peers.",
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.authFailures, m.volumes, m.packObjects, m.packBytes, m.notices)
	return m
}

// instrument counts h's requests under endpoint (a fixed label: never
// taken from the request) and recovers from panics with a 500.
func (s *Server) instrument(endpoint string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("api: handler panicked", "endpoint", endpoint, "panic", v)
				if !rec.wrote {
					writeError(rec, http.StatusInternalServerError, "api: internal error")
				}
			}
			code := rec.code
			if code == 0 {
				code = http.StatusOK
			}
			s.metrics.requests.WithLabelValues(endpoint, strconv.Itoa(code)).Inc()
			s.metrics.duration.WithLabelValues(endpoint).Observe(time.Since(start).Seconds())
		}()
		h.ServeHTTP(rec, r)
	})
}

// recorder remembers the status code written.
type recorder struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.code, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if !r.wrote {
		r.code, r.wrote = http.StatusOK, true
	}
	return r.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection (deadlines,
// flushes).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

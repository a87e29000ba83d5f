package dht

import (
	"context"
	"log/slog"

	alog "github.com/anacrolix/log"
)

// newLogger turns l into the logger anacrolix wants: lines at Info and above
// go to l; with l nil nothing is logged.
func newLogger(l *slog.Logger) alog.Logger {
	lg := alog.NewLogger("dht")
	lg.SetHandlers(slogHandler{l})
	return lg.FilterLevel(alog.Info)
}

// slogHandler passes anacrolix log records to a *slog.Logger (nil: drops).
type slogHandler struct{ l *slog.Logger }

func (h slogHandler) Handle(r alog.Record) {
	if h.l == nil {
		return
	}
	lvl := slog.LevelDebug
	switch {
	case !r.Level.LessThan(alog.Error):
		lvl = slog.LevelError
	case !r.Level.LessThan(alog.Warning):
		lvl = slog.LevelWarn
	case !r.Level.LessThan(alog.Info):
		lvl = slog.LevelInfo
	}
	h.l.Log(context.Background(), lvl, r.Msg.String(), "names", r.Names)
}

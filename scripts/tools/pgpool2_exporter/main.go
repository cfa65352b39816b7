// The pgpool2_exporter command, v1.2.2. The vendored snapshot of the tag has the exporter's module (its
// collector, metric names, connection handling and go.sum) but not cmd/pgpool2_exporter: the snapshot's own
// .gitignore line "pgpool2_exporter" matches that directory too. This file is that command's wiring of the
// module's exported API, the same at the tag: flags, DSN from the environment, start, listen.
package main

import (
	"fmt"
	"net/http"
	"net/url"
	"os"

	"github.com/alecthomas/kingpin/v2"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/promlog"
	"github.com/prometheus/common/promlog/flag"
	"github.com/prometheus/common/version"

	exp "github.com/pgpool/pgpool2_exporter"
)

// dataSourceName is DATA_SOURCE_NAME, or a URL made of DATA_SOURCE_USER, DATA_SOURCE_PASS (escaped) and
// DATA_SOURCE_URI, the variables the image's command line sets.
func dataSourceName() string {
	if dsn := os.Getenv("DATA_SOURCE_NAME"); dsn != "" {
		return dsn
	}
	credentials := url.UserPassword(os.Getenv("DATA_SOURCE_USER"), os.Getenv("DATA_SOURCE_PASS"))
	return "postgresql://" + credentials.String() + "@" + os.Getenv("DATA_SOURCE_URI")
}

func main() {
	logConfig := &promlog.Config{}
	flag.AddFlags(kingpin.CommandLine, logConfig) // --web.* are the module's own flags
	kingpin.Version(version.Print("pgpool2_exporter"))
	kingpin.HelpFlag.Short('h')
	kingpin.Parse()
	exp.Logger = promlog.New(logConfig)

	dsn := dataSourceName()
	// NewExporter retries every 5 s until it has logged in to Pgpool-II: nothing listens until then.
	exporter := exp.NewExporter(dsn, exp.Namespace)
	defer func() { exporter.DB.Close() }() // the connection scrapes last reopened
	prometheus.MustRegister(exporter)

	pgpoolVersion, err := exp.QueryVersion(exporter.DB)
	if err != nil {
		level.Error(exp.Logger).Log("err", err)
	}
	exp.PgpoolSemver = pgpoolVersion

	level.Info(exp.Logger).Log("msg", "Starting pgpool2_exporter", "version", version.Info(), "dsn", exp.MaskPassword(dsn))
	level.Info(exp.Logger).Log("msg", "Listening on address", "address", *exp.ListenAddress)
	http.Handle(*exp.MetricsPath, promhttp.Handler())
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(fmt.Sprintf(exp.LandingPage, *exp.MetricsPath)))
	})
	if err := http.ListenAndServe(*exp.ListenAddress, nil); err != nil {
		level.Error(exp.Logger).Log("err", err)
		os.Exit(1)
	}
}

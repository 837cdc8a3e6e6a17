# bench/chaos.sh's picture: every message's latency over the run (WebSocket, Telegram, IRC),
# each injected event a labelled vertical line, the gateway's RSS on the right axis.
#   gnuplot -e "dir='OUT'; chart_title='...'" bench/chaos/plot.gp   ->  OUT/chaos.png
if (!exists("dir")) dir = "."
if (!exists("chart_title")) chart_title = "drawbridge under chaos"
if (exists("xmax")) set xrange [0:xmax]
set terminal pngcairo size 1600,700 font "sans,10" noenhanced
set output dir."/chaos.png"
set title chart_title
set xlabel "seconds into the run"
set ylabel "latency, ms (log scale)"
set logscale y
set y2label "gateway RSS, MiB"
set y2tics
set y2range [0:*]
set ytics nomirror
set grid ytics
set key outside right top
set datafile separator "\t"

# The events: one coloured line each, by kind.
kinds = "restart-signal restart-rpc restart-patch reexec update hot-patch term-start kill-start"
colors = "#1f77b4 #17becf #9467bd #2ca02c #bcbd22 #c7c7c7 #ff7f0e #d62728"
stats dir."/events.tsv" using 1 nooutput
n_events = exists("STATS_records") ? STATS_records : 0
do for [i=0:n_events-1] {
  t = real(system(sprintf("sed -n '%dp' %s/events.tsv | cut -f1", i+1, dir)))
  k = system(sprintf("sed -n '%dp' %s/events.tsv | cut -f2", i+1, dir))
  c = "#888888"
  do for [j=1:words(kinds)] { if (word(kinds, j) eq k) { c = word(colors, j) } }
  set arrow from t, graph 0 to t, graph 1 nohead lc rgb c lw 1 dt 2
}
# A legend of the kinds, as invisible points with their colours.
plot dir."/latency.tsv" using 1:(strcol(3) eq "w" ? $2 : 1/0) with points pt 7 ps 0.25 lc rgb "#3060c0" title "WebSocket", \
     dir."/latency.tsv" using 1:(strcol(3) eq "t" ? $2 : 1/0) with points pt 7 ps 0.35 lc rgb "#30a060" title "Telegram", \
     dir."/latency.tsv" using 1:(strcol(3) eq "i" ? $2 : 1/0) with points pt 5 ps 0.6 lc rgb "#a040a0" title "IRC", \
     dir."/rss.tsv" using 1:2 axes x1y2 with lines lw 2 lc rgb "#555555" title "RSS (MiB)", \
     for [j=1:words(kinds)] NaN with lines lw 2 dt 2 lc rgb word(colors, j) title word(kinds, j)

# Plots the step-burst trace of bench/sim_scaler: workers and queue depth
# over time, corral's scaler against the tuned HPA-style policy.
#   build/bench/sim_scaler -c burst.csv
#   gnuplot -e "in='burst.csv'; out='docs/scaling-burst.svg'" bench/sim_plot.gp
# (bench/sim_scaler.sh does both.) CSV columns: t, rate, corral_depth,
# corral_workers, hpa_depth, hpa_workers; one row a second.
set terminal svg size 960,640 dynamic font "sans,12" background "white"
set output out
set datafile separator ","
set xrange [450:1950]
set grid ytics lc rgb "#dddddd"
set multiplot layout 2,1 title "Step burst (simulated): 2 jobs/s, 20 jobs/s from 600 s to 1500 s; jobs log-normal, median 2 s; 4 slots per worker"

set ylabel "workers"
set y2label "arrivals / s"
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:25]
set key top right
set format x ""
set lmargin 10
set rmargin 10
plot in every ::1 using 1:2 axes x1y2 with lines lw 1 lc rgb "#aaaaaa" title "arrival rate", \
     in every ::1 using 1:4 with steps lw 2 lc rgb "#1f77b4" title "corral workers", \
     in every ::1 using 1:6 with steps lw 2 lc rgb "#d62728" title "HPA-style workers (tuned)"

set format x "%g"
set xlabel "time (s)"
set ylabel "jobs waiting"
unset y2label
unset y2tics
plot in every ::1 using 1:3 with lines lw 2 lc rgb "#1f77b4" title "corral queue depth", \
     in every ::1 using 1:5 with lines lw 2 lc rgb "#d62728" title "HPA-style queue depth"
unset multiplot

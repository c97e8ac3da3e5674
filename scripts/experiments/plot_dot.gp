# Task loss and distillation loss per epoch, SGD vs DOT (the DOT paper's figure, on
# our data). Called by scripts/experiments/make_results.py:
#   gnuplot -e "datafile='D'; outfile='P.png'; plottitle='T'" scripts/experiments/plot_dot.gp
# D has columns: epoch sgd_ce dot_ce sgd_kd dot_kd (per-epoch train means over seeds).
# Only draws; the numbers come from kd-train's metrics.csv via make_results.py.
if (!exists("datafile")) datafile = 'dot_losses.dat'
if (!exists("outfile")) outfile = 'dot_losses.png'
if (!exists("plottitle")) plottitle = ''

set terminal pngcairo size 1100,450 font ",11" noenhanced
set output outfile
set multiplot layout 1,2 title "SGD vs DOT: ".plottitle
set grid
set xlabel "epoch"
set key top right
set style line 1 lc rgb "#1f77b4" lw 2 pt 7 ps 0.8
set style line 2 lc rgb "#d62728" lw 2 pt 5 ps 0.8

set title "task loss (CE, train epoch mean)"
set ylabel "loss"
plot datafile using 1:2 with linespoints ls 1 title "SGD", \
     datafile using 1:3 with linespoints ls 2 title "DOT"

set title "distillation loss (KD, T² KL, train epoch mean)"
set ylabel "loss"
plot datafile using 1:4 with linespoints ls 1 title "SGD", \
     datafile using 1:5 with linespoints ls 2 title "DOT"

unset multiplot

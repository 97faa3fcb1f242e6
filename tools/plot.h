/* A scatter plot as a PNG, for the CLI's reports: points (x, y) with x on a
 * log10 axis (decades labelled 1, 10, 100, ...) and y in [0, 1] (labelled
 * 0, 0.5, 1), a least-squares line through them, axes and tick labels drawn
 * with a built-in 5x7 digit font. No other text: the caption goes in the
 * document that shows it. */
#ifndef VLP_TOOLS_PLOT_H
#define VLP_TOOLS_PLOT_H
#include <stdbool.h>

/* x > 0 (others are left out); returns false after a message on stderr */
bool plot_logx_scatter(const char *path, const double *x, const double *y, int n, double slope, double intercept);
#endif

/* edit_weights.h - weight files with one tensor made wrong, for the tests of
 * what a tool does with weights that give NaN: a NaN or infinite parameter, a
 * negative running_var, or finite values so large that the outputs overflow. */
#ifndef KDC_TEST_EDIT_WEIGHTS_H
#define KDC_TEST_EDIT_WEIGHTS_H

/* Loads src (weights of arch with num_classes outputs), sets elements
 * [first, first + count) of tensor `name` to value (count < 0: to the end),
 * and saves the result as dst. Fails the current test when it cannot. */
void kdc_test_edit_weights(const char *src, const char *dst, const char *arch, int num_classes,
                           const char *name, long first, long count, float value);

#endif

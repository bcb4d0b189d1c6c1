/* Classifies JPEG photos with a model from onnxtl fit-head, on the public C
 * API: one line per photo with its most probable class.
 *
 *   cc classify.c $(pkg-config --cflags --libs onnxtl) -o classify
 *   ./classify model.onnx photo.jpg...
 */
#include <stdio.h>
#include <stdlib.h>

#include <onnxtl.h>

static int fail(onnxtl_status *st) {
    fprintf(stderr, "classify: %s\n", onnxtl_status_message(st));
    onnxtl_status_release(st);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.onnx PHOTO.jpg...\n", argv[0]);
        return 2;
    }
    onnxtl_classifier *c;
    onnxtl_status *st = onnxtl_classifier_open(argv[1], NULL, &c);
    if (st) return fail(st);
    const size_t n = onnxtl_classifier_class_count(c);
    float *p = malloc(n * sizeof *p);
    int rc = p ? 0 : 1;
    for (int i = 2; i < argc && p; i++) {
        if ((st = onnxtl_classifier_classify(c, argv[i], p))) {
            rc = fail(st); /* this photo only: go on with the others */
            continue;
        }
        size_t best = 0;
        for (size_t k = 1; k < n; k++)
            if (p[k] > p[best]) best = k;
        printf("%s\t%s\t%.6f\n", argv[i], onnxtl_classifier_class_name(c, best), p[best]);
    }
    free(p);
    onnxtl_classifier_release(c);
    return rc;
}

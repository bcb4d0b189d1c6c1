/* onnxtl extract: image folders to a cached features file. */
#include <omp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "json.h"
#include "extract.h"
#include "progress.h"
#include "status.h"

static const char extract_help[] =
    "usage: onnxtl extract MODEL DATA_DIR [options]\n"
    "\n"
    "Runs the frozen backbone of MODEL once over every image of DATA_DIR and caches\n"
    "the features that feed its classifier head in a features file.\n"
    "\n"
    "DATA_DIR layouts (detected): train/<class>/*.jpg with test/ and val/ splits;\n"
    "<class>/*.jpg; or Kaggle's flat cat.1.jpg, dog.2.jpg.  Classes are numbered\n"
    "in sorted order, as torchvision's ImageFolder does.\n"
    "\n"
    "options:\n"
    "  -o FILE          output (default features.bin; features.K-of-N.bin for a shard)\n"
    "  --cut TENSOR     cache this tensor instead of the classifier head's input\n"
    "  --dtype T        fp32 (default) or fp16: store the features as IEEE halves, half the\n"
    "                   file (for a cache of an inner layer that train --from reads); fit-head\n"
    "                   and train widen them back to fp32\n"
    "  --views K        K rows per training image (2 to 255), each augmented as --augment says,\n"
    "                   view v with the draws train --augment takes in epoch v + 1; fit-head and\n"
    "                   train then take the views in turn, one per epoch; test and val images\n"
    "                   keep one plain row\n"
    "  --augment A      with --views: flip, crop or flip,crop (default), as train --augment\n"
    "  --seed S         with --views: the draws' seed (default 0, as train's)\n"
    "  --batch N        images per backbone run (default 16)\n"
    "  --threads N      compute threads (default: all cores)\n"
    "  --decoders N     JPEG decoding threads (default 1)\n"
    "  --streams N      batches in flight, each on its own session (default 1; on cuda, 2 let one\n"
    "                   batch's upload overlap another's compute)\n"
    "  --shard K/N      extract the K-th of N deterministic shares (merge them with onnxtl merge)\n"
    "  --strict         stop at the first unreadable image instead of skipping it\n"
    "  --max-pixels N   skip JPEGs that declare more pixels (default 100000000)\n"
    "  --restart        discard an interrupted run's FILE.partial instead of resuming it\n"
    "  --calibrate N    with --precision int8: images of the training split (evenly spaced) whose\n"
    "                   fp32 activation ranges set the int8 scales (default 256); the scales are\n"
    "                   recorded in FILE, and fit-head copies them into its model for run\n"
    "  --quiet          no progress or summary\n"
    "  --json           the summary as one JSON object (progress stays on stderr)\n" CLI_DEVICE_HELP
    "\n"
    "preprocessing: torchvision's ImageNet evaluation transform (Resize 256, CenterCrop\n"
    "224, RGB 0 to 1, mean 0.485,0.456,0.406, std 0.229,0.224,0.225), changed by what\n"
    "the model states (a fixed input size, image metadata, an ImageScaler on the input),\n"
    "then by these options; extract prints what it uses and why:\n" CLI_PREPROCESS_HELP
    "\n"
    "An interrupted run (Ctrl-C, kill, power loss) leaves FILE.partial; running the\n"
    "same command again resumes it.  FILE itself only appears once complete.  Ctrl-C\n"
    "or SIGTERM stops after the batch in hand, its rows synced; a second one at once.\n"
    "A second extract onto the same FILE refuses while the first runs.\n";


static int parse_shard(const char *s, otl_extract_options *o) {
    int k, n;
    char extra;
    if (!s || sscanf(s, "%d/%d%c", &k, &n, &extra) != 2 || n < 1 || k < 1 || k > n)
        return cli_usage("extract", "--shard takes K/N with 1 <= K <= N, got '%s'", s ? s : "");
    o->shard_k = k;
    o->shard_n = n;
    return 0;
}

typedef struct {
    const char *out;
    bool quiet, json;
    bool augment_given, seed_given; /* they need --views */
} output_flags;

static int parse_flag(int argc, char **argv, int *i, otl_extract_options *o, output_flags *f) {
    const char *a = argv[*i];
    if (!strcmp(a, "--strict")) return o->strict = true, 0;
    if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) return f->quiet = true, 0;
    if (!strcmp(a, "--json")) return f->json = true, 0;
    if (!strcmp(a, "--restart")) return o->restart = true, 0;
    const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    int rc = 0;
    if (v && (cli_device_option("extract", a, v, &o->session, &rc) || cli_preprocess_option("extract", a, v, &o->pre, &rc))) {
        (*i)++;
        return rc;
    }
    static const char *const with_value[] = {"-o", "--cut", "--dtype", "--views", "--augment", "--seed", "--batch", "--threads", "--decoders", "--streams", "--shard",
                                             "--max-pixels", "--calibrate"};
    bool known = false;
    for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++) known |= !strcmp(a, with_value[k]);
    if (!known) return cli_usage("extract", "unknown option '%s'", a);
    if (!v) return cli_usage("extract", "%s needs a value", a);
    (*i)++;
    if (!strcmp(a, "-o")) f->out = v;
    else if (!strcmp(a, "--cut")) o->cut = v;
    else if (!strcmp(a, "--dtype")) {
        if (!otl_features_dtype_parse(v, &o->dtype))
            return cli_usage("extract", "--dtype takes fp32 or fp16, got '%s'", v);
    }
    else if (!strcmp(a, "--views")) return cli_parse_int("extract", a, v, 2, OTL_FEATURES_MAX_VIEWS, &o->views) ? 0 : EXIT_USAGE;
    else if (!strcmp(a, "--augment")) {
        onnxtl_status *st = otl_augment_parse(v, &o->augment);
        if (st) {
            rc = cli_usage("extract", "%s", onnxtl_status_message(st));
            onnxtl_status_release(st);
            return rc;
        }
        f->augment_given = true;
    }
    else if (!strcmp(a, "--seed")) {
        int seed;
        if (!cli_parse_int("extract", a, v, 0, 1 << 30, &seed)) return EXIT_USAGE;
        o->augment.seed = (uint64_t)seed;
        f->seed_given = true;
    }
    else if (!strcmp(a, "--batch")) return cli_parse_int("extract", a, v, 1, 4096, &o->batch) ? 0 : EXIT_USAGE;
    else if (!strcmp(a, "--threads")) return cli_parse_int("extract", a, v, 1, 1024, &o->session.threads) ? 0 : EXIT_USAGE;
    else if (!strcmp(a, "--decoders")) return cli_parse_int("extract", a, v, 1, 256, &o->decoders) ? 0 : EXIT_USAGE;
    else if (!strcmp(a, "--streams")) return cli_parse_int("extract", a, v, 1, 8, &o->streams) ? 0 : EXIT_USAGE;
    else if (!strcmp(a, "--calibrate")) {
        int n;
        if (!cli_parse_int("extract", a, v, 1, 1000000, &n)) return EXIT_USAGE;
        o->calibrate = (size_t)n;
    }
    else if (!strcmp(a, "--max-pixels")) {
        int mp;
        if (!cli_parse_int("extract", a, v, 1, 2000000000, &mp)) return EXIT_USAGE;
        o->max_pixels = mp;
    }
    else return parse_shard(v, o);
    return 0;
}

static void print_json(const otl_extract_result *r, const char *out) {
    cli_json j = cli_json_start(stdout);
    cli_json_object(&j, NULL);
    cli_json_str(&j, "output", out);
    cli_json_bool(&j, "already_complete", r->already_complete);
    cli_json_int(&j, "images", (long long)r->images);
    cli_json_int(&j, "extracted", (long long)(r->images - r->resumed - r->skipped));
    cli_json_int(&j, "resumed", (long long)r->resumed);
    cli_json_int(&j, "skipped", (long long)r->skipped);
    cli_json_int(&j, "ignored", (long long)r->ignored);
    cli_json_num(&j, "seconds", r->seconds);
    cli_json_num(&j, "images_per_second", r->images_per_second);
    if (!r->already_complete) cli_json_feature_stats(&j, "stats", &r->stats, (const char *const *)r->classes);
    cli_json_close(&j);
}

static void print_summary(const otl_extract_result *r, int views) {
    cli_print_feature_stats(&r->stats, (const char *const *)r->classes);
    printf("extracted %zu images in %.1f s (%.1f %s/s)", r->images - r->resumed - r->skipped, r->seconds,
           r->images_per_second, views > 1 ? "rows" : "img");
    if (views > 1) printf(", %d views of each training image", views);
    if (r->resumed) printf(", %zu images resumed from an earlier run", r->resumed);
    printf("; skipped %zu unreadable image%s, ignored %zu non-image file%s\n", r->skipped,
           r->skipped == 1 ? "" : "s", r->ignored, r->ignored == 1 ? "" : "s");
}

/* The signal handler's flag: a handler can only reach static storage. */
static atomic_int interrupted;

static void on_signal(int sig) {
    (void)sig;
    atomic_store_explicit(&interrupted, 1, memory_order_relaxed);
}

/* Ctrl-C or a kill (SIGTERM) stops extract after the batch in hand, its rows
 * synced; a second one ends it at once (SA_RESETHAND), losing at most the
 * rows not yet synced, which a resume then recomputes.  SA_RESTART keeps the
 * reads and writes in flight from failing with EINTR meanwhile. */
static void stop_on_signals(void) {
    struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESETHAND | SA_RESTART};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int cmd_extract(int argc, char **argv) {
    if (cli_help_asked(argc, argv, extract_help)) return 0;
    otl_extract_options o = {.dtype = ONNXTL_FLOAT, .views = 1, .augment = {.crop = true, .flip = true}, .batch = 16, .decoders = 1, .shard_k = 1, .shard_n = 1, .session = {.log = cli_log_line}};
    output_flags f = {0};
    const char *pos[2] = {0};
    int n_pos = 0;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1]) {
            int rc = parse_flag(argc, argv, &i, &o, &f);
            if (rc) return rc;
        } else if (n_pos < 2) {
            pos[n_pos++] = argv[i];
        } else {
            return cli_usage("extract", "unexpected argument '%s'", argv[i]);
        }
    }
    if (n_pos != 2) return cli_usage("extract", "expected MODEL and DATA_DIR");
    if ((f.augment_given || f.seed_given) && o.views < 2)
        return cli_usage("extract", "%s draws the augmented views of --views K, which is not given",
                         f.augment_given ? "--augment" : "--seed");
    if (o.calibrate && o.session.precision != ONNXTL_PRECISION_INT8)
        return cli_usage("extract", "--calibrate sets the scales of --precision int8, which is not given");
    char default_out[64];
    snprintf(default_out, sizeof default_out, o.shard_n > 1 ? "features.%d-of-%d.bin" : "features.bin", o.shard_k, o.shard_n);
    o.model_path = pos[0];
    o.data_dir = pos[1];
    o.out_path = f.out ? f.out : default_out;
    if (!o.session.threads) o.session.threads = omp_get_num_procs();
    cli_reporter rep;
    const otl_events events = cli_reporter_events(&rep, f.quiet);
    o.events = &events;
    o.interrupt = &interrupted;
    stop_on_signals();
    otl_extract_result r;
    onnxtl_status *st = otl_extract(&o, &r);
    if (st) {
        otl_extract_result_free(&r);
        return cli_fail(st);
    }
    if (f.json)
        print_json(&r, o.out_path);
    else if (r.already_complete && !f.quiet)
        printf("%s is already complete for this model, data and options; nothing to do\n", o.out_path);
    else if (!f.quiet)
        print_summary(&r, o.views);
    otl_extract_result_free(&r);
    return 0;
}

#include "dataset.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "status.h"
#include "strlist.h"

const char *const otl_split_names[SPLIT_COUNT] = {"train", "val", "test", "all"};

const char *otl_layout_name(otl_layout l) {
    static const char *const names[] = {"ImageFolder with train/val/test splits",
                                        "ImageFolder without splits (class folders)",
                                        "flat Kaggle layout (label.N.jpg)"};
    return names[l];
}

/* The extensions torchvision's ImageFolder accepts as images. */
static bool is_image_name(const char *name) {
    static const char *const exts[] = {".jpg", ".jpeg", ".png", ".ppm", ".bmp",
                                       ".pgm", ".tif", ".tiff", ".webp"};
    const char *dot = strrchr(name, '.');
    if (!dot || name[0] == '.') return false;
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
        if (!strcasecmp(dot, exts[i])) return true;
    return false;
}


static bool is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Sorted entry names of a folder: its subfolders, and its files named as
 * images.  Other files are only counted in *ignored, so that memory follows
 * the images kept, whatever else a folder holds. */
static onnxtl_status *list_dir(const char *path, otl_strlist *dirs, otl_strlist *files, size_t *ignored) {
    DIR *d = opendir(path);
    if (!d) return otl_error(ONNXTL_ERR_IO, "%s: cannot read folder: %s", path, strerror(errno));
    onnxtl_status *st = NULL;
    for (struct dirent *e; !st && (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char full[4096];
        if (snprintf(full, sizeof full, "%s/%s", path, e->d_name) >= (int)sizeof full) continue;
        if (is_dir(full)) st = otl_strlist_push(dirs, e->d_name);
        else if (is_image_name(e->d_name)) st = otl_strlist_push(files, e->d_name);
        else (*ignored)++;
    }
    closedir(d);
    otl_strlist_sort(dirs);
    otl_strlist_sort(files);
    return st;
}

static onnxtl_status *add_sample(otl_dataset *ds, size_t *cap, const char *rel, int label, int split) {
    if (ds->n_samples == *cap) {
        size_t c = *cap ? *cap * 2 : 1024;
        otl_sample *s = realloc(ds->samples, c * sizeof *s);
        if (!s) return otl_nomem();
        ds->samples = s;
        *cap = c;
    }
    otl_sample *s = &ds->samples[ds->n_samples];
    if (!(s->path = strdup(rel))) return otl_nomem();
    s->label = label;
    s->split = split;
    ds->n_samples++;
    return NULL;
}

/* The folders from the root down to the one being walked, to recognise a
 * symlink that leads back into them (a loop). */
#define MAX_FOLDER_DEPTH 64
typedef struct folder_chain {
    dev_t dev;
    ino_t ino;
    int depth;
    const struct folder_chain *up;
} folder_chain;

static bool on_chain(const folder_chain *c, const struct stat *sb) {
    for (; c; c = c->up)
        if (c->dev == sb->st_dev && c->ino == sb->st_ino) return true;
    return false;
}

static onnxtl_status *walk_folder(otl_dataset *ds, size_t *cap, const char *rel, int label, int split,
                                  const folder_chain *up);

/* Adds every image under rel (recursively, sorted as os.walk would) with one
 * label.  Symlinked folders are followed, except into a folder being walked
 * (a loop) or deeper than MAX_FOLDER_DEPTH: those count as ignored. */
static onnxtl_status *walk_class(otl_dataset *ds, size_t *cap, const char *rel, int label, int split) {
    struct stat root;
    if (stat(ds->root, &root) != 0) return otl_error(ONNXTL_ERR_IO, "%s: cannot read folder: %s", ds->root, strerror(errno));
    const folder_chain base = {root.st_dev, root.st_ino, 0, NULL};
    return walk_folder(ds, cap, rel, label, split, &base);
}

static onnxtl_status *walk_folder(otl_dataset *ds, size_t *cap, const char *rel, int label, int split,
                                  const folder_chain *up) {
    char full[8300];
    snprintf(full, sizeof full, "%s/%s", ds->root, rel);
    struct stat sb;
    if (stat(full, &sb) != 0 || on_chain(up, &sb) || up->depth >= MAX_FOLDER_DEPTH) {
        ds->ignored++;
        return NULL;
    }
    const folder_chain here = {sb.st_dev, sb.st_ino, up->depth + 1, up};
    otl_strlist dirs = {0}, files = {0};
    onnxtl_status *st = list_dir(full, &dirs, &files, &ds->ignored);
    for (size_t i = 0; !st && i < files.n; i++) {
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", rel, files.items[i]) >= (int)sizeof path) continue;
        if (strpbrk(path, "\t\n")) st = otl_strlist_push(&ds->unrecordable, path);
        else st = add_sample(ds, cap, path, label, split);
    }
    for (size_t i = 0; !st && i < dirs.n; i++) {
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", rel, dirs.items[i]) < (int)sizeof path)
            st = walk_folder(ds, cap, path, label, split, &here);
    }
    otl_strlist_free(&dirs);
    otl_strlist_free(&files);
    return st;
}

static int class_index(const otl_dataset *ds, const char *name) {
    for (int i = 0; i < ds->n_classes; i++)
        if (!strcmp(ds->classes[i], name)) return i;
    return -1;
}

static onnxtl_status *set_classes(otl_dataset *ds, otl_strlist *names) {
    otl_strlist_sort(names);
    ds->classes = calloc(names->n + 1, sizeof(char *));
    if (!ds->classes) return otl_nomem();
    for (size_t i = 0; i < names->n; i++) {
        if (i && !strcmp(names->items[i], names->items[i - 1])) continue; /* union of splits */
        if (!(ds->classes[ds->n_classes++] = strdup(names->items[i]))) return otl_nomem();
    }
    return NULL;
}

static int split_of(const char *name) {
    if (!strcmp(name, "train")) return SPLIT_TRAIN;
    if (!strcmp(name, "val") || !strcmp(name, "valid") || !strcmp(name, "validation")) return SPLIT_VAL;
    if (!strcmp(name, "test")) return SPLIT_TEST;
    return -1;
}

static onnxtl_status *scan_splits(otl_dataset *ds, const otl_strlist *top) {
    otl_strlist names = {0};
    onnxtl_status *st = NULL;
    size_t cap = 0;
    for (size_t i = 0; !st && i < top->n; i++) { /* classes: the union over splits */
        if (split_of(top->items[i]) < 0) continue;
        char p[8300];
        snprintf(p, sizeof p, "%s/%s", ds->root, top->items[i]);
        otl_strlist dirs = {0}, files = {0};
        st = list_dir(p, &dirs, &files, &ds->ignored);
        for (size_t k = 0; !st && k < dirs.n; k++) st = otl_strlist_push(&names, dirs.items[k]);
        ds->ignored += files.n; /* images beside the class folders */
        otl_strlist_free(&dirs);
        otl_strlist_free(&files);
    }
    if (!st) st = set_classes(ds, &names);
    for (int split = 0; !st && split < SPLIT_ALL; split++) {
        for (size_t i = 0; !st && i < top->n; i++) {
            if (split_of(top->items[i]) != split) continue;
            for (int c = 0; !st && c < ds->n_classes; c++) {
                char rel[4096], full[8300];
                snprintf(rel, sizeof rel, "%s/%s", top->items[i], ds->classes[c]);
                snprintf(full, sizeof full, "%s/%s", ds->root, rel);
                if (is_dir(full)) st = walk_class(ds, &cap, rel, c, split);
            }
        }
    }
    otl_strlist_free(&names);
    return st;
}

static onnxtl_status *scan_folders(otl_dataset *ds, otl_strlist *top, size_t top_files) {
    size_t cap = 0;
    ds->ignored += top_files;
    OTL_TRY(set_classes(ds, top));
    for (int c = 0; c < ds->n_classes; c++) OTL_TRY(walk_class(ds, &cap, ds->classes[c], c, SPLIT_ALL));
    return NULL;
}

/* Kaggle's train/ folder: cat.123.jpg, dog.456.jpg; the label is the name up to the first dot. */
static onnxtl_status *scan_flat(otl_dataset *ds, const otl_strlist *files) {
    otl_strlist names = {0};
    onnxtl_status *st = NULL;
    for (size_t i = 0; !st && i < files->n; i++) {
        const char *f = files->items[i], *dot = strchr(f, '.');
        if (dot == f) continue; /* ".jpg": no label */
        char label[256];
        snprintf(label, sizeof label, "%.*s", (int)(dot - f), f);
        st = otl_strlist_push(&names, label);
    }
    if (!st) st = set_classes(ds, &names);
    size_t cap = 0;
    for (size_t i = 0; !st && i < files->n; i++) {
        const char *f = files->items[i], *dot = strchr(f, '.');
        if (dot == f) {
            ds->ignored++;
            continue;
        }
        if (strpbrk(f, "\t\n")) {
            st = otl_strlist_push(&ds->unrecordable, f);
            continue;
        }
        char label[256];
        snprintf(label, sizeof label, "%.*s", (int)(dot - f), f);
        st = add_sample(ds, &cap, f, class_index(ds, label), SPLIT_ALL);
    }
    otl_strlist_free(&names);
    return st;
}

static int by_label(const void *a, const void *b) {
    const otl_sample *x = a, *y = b;
    return x->label != y->label ? x->label - y->label : strcmp(x->path, y->path);
}

static onnxtl_status *detect_and_scan(otl_dataset *ds) {
    otl_strlist dirs = {0}, files = {0};
    OTL_TRY(list_dir(ds->root, &dirs, &files, &ds->ignored));
    bool has_split = false;
    for (size_t i = 0; i < dirs.n; i++) has_split |= split_of(dirs.items[i]) >= 0;
    onnxtl_status *st;
    if (has_split) {
        ds->layout = LAYOUT_SPLITS;
        ds->ignored += files.n;
        st = scan_splits(ds, &dirs);
    } else if (dirs.n) {
        ds->layout = LAYOUT_FOLDERS;
        st = scan_folders(ds, &dirs, files.n);
    } else {
        ds->layout = LAYOUT_FLAT;
        st = scan_flat(ds, &files);
        if (!st && ds->n_samples) qsort(ds->samples, ds->n_samples, sizeof *ds->samples, by_label);
    }
    otl_strlist_free(&dirs);
    otl_strlist_free(&files);
    return st;
}

onnxtl_status *otl_dataset_scan(const char *root, otl_dataset **out) {
    if (!is_dir(root)) return otl_error(ONNXTL_ERR_IO, "%s: not a folder", root);
    otl_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) return otl_nomem();
    onnxtl_status *st = (ds->root = strdup(root)) ? detect_and_scan(ds) : otl_nomem();
    if (!st && ds->n_samples == 0)
        st = otl_error(ONNXTL_ERR_ARG,
                       "%s: no images found; expected train/<class>/*.jpg (and test/ or val/), "
                       "<class>/*.jpg, or Kaggle's cat.1.jpg files", root);
    if (!st && ds->n_classes < 1) st = otl_error(ONNXTL_ERR_ARG, "%s: no classes found", root);
    if (st) {
        otl_dataset_free(ds);
        return st;
    }
    *out = ds;
    return NULL;
}

void otl_dataset_free(otl_dataset *ds) {
    if (!ds) return;
    for (size_t i = 0; i < ds->n_samples; i++) free(ds->samples[i].path);
    for (int i = 0; i < ds->n_classes; i++) free(ds->classes[i]);
    free(ds->samples);
    free(ds->classes);
    otl_strlist_free(&ds->unrecordable);
    free(ds->root);
    free(ds);
}

onnxtl_status *otl_dataset_paths(const otl_dataset *ds, const size_t *indices, size_t n, otl_strlist *out) {
    for (size_t i = 0; i < n; i++) {
        char path[8300];
        const char *rel = ds->samples[indices ? indices[i] : i].path;
        if (snprintf(path, sizeof path, "%s/%s", ds->root, rel) >= (int)sizeof path)
            return otl_error(ONNXTL_ERR_ARG, "%s/%s: path too long", ds->root, rel);
        OTL_TRY(otl_strlist_push(out, path));
    }
    return NULL;
}

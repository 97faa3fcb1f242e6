#include "io/atomic.h"
#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *tmp_name(const char *path) {
    size_t n = strlen(path) + 32;
    char *t = malloc(n);
    if (t) snprintf(t, n, "%s.tmp.%ld", path, (long)getpid());
    return t;
}

vlp_err atomic_open(atomic_file *af, const char *path, vlp_error *err) {
    memset(af, 0, sizeof *af);
    af->path = strdup(path);
    af->tmp = tmp_name(path);
    if (!af->path || !af->tmp) {
        atomic_abort(af);
        VLP_FAIL(err, VLP_ERR_NOMEM, "could not allocate a file name");
    }
    af->fp = fopen(af->tmp, "wb");
    if (!af->fp) {
        int e = errno;
        vlp_err r = vlp_error_set(err, VLP_ERR_IO, __FILE__, __LINE__, "cannot create %s: %s",
                                  af->tmp, strerror(e));
        atomic_abort(af);
        return r;
    }
    return VLP_OK;
}

bool atomic_write(atomic_file *af, const void *p, size_t n) {
    if (af->failed) return false;
    if (n && fwrite(p, 1, n, af->fp) != n) {
        af->failed = true;
        af->saved_errno = errno ? errno : EIO;
    }
    return !af->failed;
}

/* fsync the directory holding `path`, so the rename itself is durable; 0 or
 * the errno. A directory that cannot be opened for it (some filesystems)
 * is not an error; an fsync that fails is: the file may not survive a crash. */
static int sync_dir(const char *path) {
    char *copy = strdup(path);
    if (!copy) return ENOMEM;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY), e = 0;
    if (fd >= 0) {
        if (fsync(fd) != 0 && errno != EINVAL) e = errno; /* EINVAL: no fsync on this kind */
        close(fd);
    }
    free(copy);
    return e;
}

vlp_err atomic_commit(atomic_file *af, vlp_error *err) {
    /* a caller may write through af->fp with fprintf: a failure it did not
     * check stays in the stream's error flag, which a later successful flush
     * does not clear */
    if (!af->failed && ferror(af->fp)) {
        af->failed = true;
        af->saved_errno = errno ? errno : EIO;
    }
    if (!af->failed && (fflush(af->fp) != 0 || fsync(fileno(af->fp)) != 0)) {
        af->failed = true;
        af->saved_errno = errno;
    }
    if (fclose(af->fp) != 0 && !af->failed) {
        af->failed = true;
        af->saved_errno = errno;
    }
    af->fp = NULL;
    if (!af->failed && rename(af->tmp, af->path) != 0) {
        af->failed = true;
        af->saved_errno = errno;
    }
    if (af->failed) {
        vlp_err r = vlp_error_set(err, VLP_ERR_IO, __FILE__, __LINE__, "cannot write %s: %s",
                                  af->path, strerror(af->saved_errno));
        atomic_abort(af);
        return r;
    }
    int e = sync_dir(af->path);
    vlp_err r = e ? vlp_error_set(err, VLP_ERR_IO, __FILE__, __LINE__,
                                  "cannot write %s: its directory did not sync: %s", af->path,
                                  strerror(e))
                  : VLP_OK;
    free(af->tmp), free(af->path);
    af->tmp = af->path = NULL;
    return r;
}

void atomic_abort(atomic_file *af) {
    if (af->fp) fclose(af->fp);
    if (af->tmp) unlink(af->tmp);
    free(af->tmp), free(af->path);
    memset(af, 0, sizeof *af);
}

vlp_err atomic_symlink(const char *target, const char *link, vlp_error *err) {
    char *tmp = tmp_name(link);
    VLP_CHECK_ALLOC(tmp, err, strlen(link) + 32);
    unlink(tmp);
    if (symlink(target, tmp) != 0 || rename(tmp, link) != 0) {
        int e = errno;
        unlink(tmp);
        free(tmp);
        VLP_FAIL(err, VLP_ERR_IO, "cannot point %s at %s: %s", link, target, strerror(e));
    }
    free(tmp);
    int e = sync_dir(link);
    VLP_CHECK_IO(!e, err, "cannot point %s at %s: its directory did not sync: %s", link, target,
                 strerror(e));
    return VLP_OK;
}

vlp_err make_dirs(const char *dir, vlp_error *err) {
    char *p = strdup(dir);
    VLP_CHECK_ALLOC(p, err, strlen(dir) + 1);
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s) continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            int e = errno;
            vlp_err r = vlp_error_set(err, VLP_ERR_IO, __FILE__, __LINE__, "cannot create %s: %s", p,
                                      strerror(e));
            free(p);
            return r;
        }
        if (!(*s = c)) break;
    }
    free(p);
    return VLP_OK;
}

vlp_err out_dir_make(const char *dir, char **made, vlp_error *err) {
    *made = access(dir, F_OK) != 0 ? strdup(dir) : NULL; /* a failed copy: only the clean-up is lost */
    return make_dirs(dir, err);
}

void out_dir_release(char *made, bool failed) {
    if (failed && made) rmdir(made);
    free(made);
}

/* cli/cli.h: shared pieces of the vhdxmerge program.
 *
 * Each subcommand lives in cli/cmd_<name>.c and is listed in the table in
 * main.c.  A command returns an exit code (enum vxm_exit).  The program
 * sees the engine only through include/vhdxmerge.h.
 */
#ifndef VXM_CLI_H
#define VXM_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "vhdxmerge.h"

struct cli_cmd {
	const char *name;
	const char *args;    /* one-line synopsis after the name */
	const char *summary; /* one line */
	int (*run)(int argc, char **argv);
	void (*help)(FILE *out);
};

extern const char *cli_prog;

/* Prints "vhdxmerge: <formatted err>" to stderr and returns the exit code
 * of err's class. */
int cli_fail(const struct vxm_err *err, int code);
/* Prints a usage error for cmd and returns VXM_EXIT_USAGE. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parses a size with an optional binary suffix (K, KiB, M, MiB, G, GiB, T,
 * TiB; case-insensitive) or plain bytes.  0 or -EINVAL. */
int cli_parse_size(const char *s, uint64_t *out);

/* Minimal streaming JSON writer (UTF-8 in, escaped out). */
struct json {
	FILE *out;
	int depth;
	bool need_comma[32];
	bool pretty;
};
void json_init(struct json *j, FILE *out);
void json_obj_begin(struct json *j, const char *key);   /* key NULL inside arrays/top */
void json_obj_end(struct json *j);
void json_arr_begin(struct json *j, const char *key);
void json_arr_end(struct json *j);
void json_str(struct json *j, const char *key, const char *v); /* v NULL -> null */
void json_u64(struct json *j, const char *key, uint64_t v);
void json_i64(struct json *j, const char *key, int64_t v);
void json_dbl(struct json *j, const char *key, double v);
void json_bool(struct json *j, const char *key, bool v);
void json_null(struct json *j, const char *key);
void json_guid(struct json *j, const char *key, const struct vxm_guid *g);
void json_end(struct json *j); /* final newline */

/* Human-readable size, e.g. "10 MiB" or "1.5 GiB". */
char *cli_human(uint64_t bytes, char *buf, size_t len);

/* Shared chain options of chain, plan, merge, convert. */
int cli_add_search_dir(struct vxm_chain_opts *o, const char *dir);
/* Opens a chain, printing the error; 0 or an exit code. */
int cli_open_chain(const char *cmd, const char *top, struct vxm_chain_opts *o,
		   struct vxm_chain **c);

int cmd_chain(int argc, char **argv);
void help_chain(FILE *out);
int cmd_plan(int argc, char **argv);
void help_plan(FILE *out);
int cmd_scan(int argc, char **argv);
void help_scan(FILE *out);
int cmd_merge(int argc, char **argv);
void help_merge(FILE *out);
int cmd_convert(int argc, char **argv);
void help_convert(FILE *out);
int cmd_info(int argc, char **argv);
void help_info(FILE *out);
int cmd_check(int argc, char **argv);
void help_check(FILE *out);
int cmd_create(int argc, char **argv);
void help_create(FILE *out);
int cmd_synth(int argc, char **argv);
void help_synth(FILE *out);
int cmd_compare(int argc, char **argv);
void help_compare(FILE *out);

#endif

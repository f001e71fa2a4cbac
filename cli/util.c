/* cli/util.c: errors, sizes and JSON output for the vhdxmerge program. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *cli_prog = "vhdxmerge";

int cli_fail(const struct vxm_err *err, int code)
{
	char buf[1400];

	if (err && err->code)
		fprintf(stderr, "%s: %s\n", cli_prog, vxm_err_format(err, buf, sizeof(buf)));
	else
		fprintf(stderr, "%s: %s\n", cli_prog, vxm_strerror(code));
	return vxm_exit_code(err && err->code ? err->code : code);
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s %s: ", cli_prog, cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s %s --help'.\n", cli_prog, cmd);
	return VXM_EXIT_USAGE;
}

int cli_parse_size(const char *s, uint64_t *out)
{
	char *end;
	uint64_t v, mul = 1;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	if (*end) {
		static const struct { const char *sfx; uint64_t mul; } tab[] = {
			{ "k", 1ull << 10 }, { "kib", 1ull << 10 }, { "m", 1ull << 20 },
			{ "mib", 1ull << 20 }, { "g", 1ull << 30 }, { "gib", 1ull << 30 },
			{ "t", 1ull << 40 }, { "tib", 1ull << 40 }, { "b", 1 },
		};
		size_t i;
		for (i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
			if (!strcasecmp(end, tab[i].sfx))
				break;
		if (i == sizeof(tab) / sizeof(tab[0]))
			return -EINVAL;
		mul = tab[i].mul;
	}
	if (v && mul > UINT64_MAX / v)
		return -EINVAL;
	*out = v * mul;
	return 0;
}

char *cli_human(uint64_t bytes, char *buf, size_t len)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = (double)bytes;
	int u = 0;

	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%" PRIu64 " B", bytes);
	else if (v == (double)(uint64_t)v)
		snprintf(buf, len, "%.0f %s", v, unit[u]);
	else
		snprintf(buf, len, "%.1f %s", v, unit[u]);
	return buf;
}

/* ---- JSON ----------------------------------------------------------------- */

void json_init(struct json *j, FILE *out)
{
	memset(j, 0, sizeof(*j));
	j->out = out;
	j->pretty = true;
}

static void indent(struct json *j)
{
	if (!j->pretty)
		return;
	fputc('\n', j->out);
	for (int i = 0; i < j->depth; i++)
		fputs("  ", j->out);
}

static void put_escaped(FILE *out, const char *s)
{
	fputc('"', out);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"': fputs("\\\"", out); break;
		case '\\': fputs("\\\\", out); break;
		case '\n': fputs("\\n", out); break;
		case '\r': fputs("\\r", out); break;
		case '\t': fputs("\\t", out); break;
		default:
			if (*p < 0x20)
				fprintf(out, "\\u%04x", *p);
			else
				fputc(*p, out);
		}
	}
	fputc('"', out);
}

static void key(struct json *j, const char *k)
{
	if (j->depth > 0) {
		if (j->need_comma[j->depth])
			fputc(',', j->out);
		indent(j);
	}
	j->need_comma[j->depth] = true;
	if (k) {
		put_escaped(j->out, k);
		fputs(j->pretty ? ": " : ":", j->out);
	}
}

void json_obj_begin(struct json *j, const char *k)
{
	key(j, k);
	fputc('{', j->out);
	j->need_comma[++j->depth] = false;
}

void json_obj_end(struct json *j)
{
	bool had = j->need_comma[j->depth--];
	if (had)
		indent(j);
	fputc('}', j->out);
}

void json_arr_begin(struct json *j, const char *k)
{
	key(j, k);
	fputc('[', j->out);
	j->need_comma[++j->depth] = false;
}

void json_arr_end(struct json *j)
{
	bool had = j->need_comma[j->depth--];
	if (had)
		indent(j);
	fputc(']', j->out);
}

void json_str(struct json *j, const char *k, const char *v)
{
	key(j, k);
	if (v)
		put_escaped(j->out, v);
	else
		fputs("null", j->out);
}

void json_u64(struct json *j, const char *k, uint64_t v)
{
	key(j, k);
	fprintf(j->out, "%" PRIu64, v);
}

void json_i64(struct json *j, const char *k, int64_t v)
{
	key(j, k);
	fprintf(j->out, "%" PRId64, v);
}

void json_dbl(struct json *j, const char *k, double v)
{
	key(j, k);
	fprintf(j->out, "%.6g", v);
}

void json_bool(struct json *j, const char *k, bool v)
{
	key(j, k);
	fputs(v ? "true" : "false", j->out);
}

void json_null(struct json *j, const char *k)
{
	key(j, k);
	fputs("null", j->out);
}

void json_guid(struct json *j, const char *k, const struct vxm_guid *g)
{
	char s[VXM_GUID_STRLEN + 1];
	json_str(j, k, vxm_guid_fmt(g, s));
}

void json_end(struct json *j)
{
	fputc('\n', j->out);
	fflush(j->out);
}

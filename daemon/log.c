/* log.c: see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static enum log_level current_level = LOG_LVL_INFO;

static const struct {
	const char *name;
	int syslog_priority; /* for the sd-daemon "<N>" prefix */
} levels[] = {
	[LOG_LVL_ERROR] = { "error", 3 },
	[LOG_LVL_WARN] = { "warn", 4 },
	[LOG_LVL_INFO] = { "info", 6 },
	[LOG_LVL_DEBUG] = { "debug", 7 },
};

void log_set_level(enum log_level level) { current_level = level; }
enum log_level log_get_level(void) { return current_level; }
const char *log_level_name(enum log_level level) { return levels[level].name; }

int log_level_parse(const char *name, enum log_level *out)
{
	for (unsigned i = 0; i < sizeof levels / sizeof levels[0]; i++) {
		if (strcmp(levels[i].name, name) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

static int under_journal(void)
{
	static int cached = -1;
	if (cached < 0)
		cached = getenv("JOURNAL_STREAM") != NULL;
	return cached;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	if (level > current_level)
		return;
	char line[2048];
	int n;
	if (under_journal()) {
		n = snprintf(line, sizeof line, "<%d>", levels[level].syslog_priority);
	} else {
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		n = (int)strftime(line, sizeof line, "%Y-%m-%d %H:%M:%S", &tm);
		n += snprintf(line + n, sizeof line - (size_t)n, ".%03ld %s: ",
			      ts.tv_nsec / 1000000, levels[level].name);
	}
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
	va_end(ap);
	size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
	if (len > sizeof line - 2)
		len = sizeof line - 2;
	/* One line per record: a newline in a message would fake a second one. */
	for (size_t i = (size_t)n; i < len; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	line[len++] = '\n';
	fwrite(line, 1, len, stderr);
}

/*
 * log.h: levelled logging to stderr.
 *
 * Under systemd (JOURNAL_STREAM set) each line starts with the sd-daemon
 * priority prefix "<N>" so journald records the level; elsewhere lines carry
 * a timestamp and the level name.
 */
#ifndef REFERRALD_LOG_H
#define REFERRALD_LOG_H

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Returns 0 and sets *out for "error", "warn", "info", "debug". */
int log_level_parse(const char *name, enum log_level *out);
const char *log_level_name(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)                                        \
	do {                                                  \
		if (log_get_level() >= LOG_LVL_DEBUG)         \
			log_msg(LOG_LVL_DEBUG, __VA_ARGS__);  \
	} while (0)

#endif

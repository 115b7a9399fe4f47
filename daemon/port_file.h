/* port_file.h: telling scripts and tests which port the system picked. */
#ifndef REFERRALD_PORT_FILE_H
#define REFERRALD_PORT_FILE_H

/* Writes "PORT\n" to path via path.tmp and a rename, so that a reader never
 * sees half a number. Returns 0 or -1 (errno set). */
int write_port_file(const char *path, int port);

#endif

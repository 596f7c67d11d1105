/* batch.h: `p2v batch PLAN`: the plan (an INI file, parsed with libinih),
 * the command lines each server's stages run, the state file that makes a
 * batch resumable, and the report. */
#ifndef P2V_BATCH_H
#define P2V_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <json.h>

/* A server goes through these in order; fetch only for ssh:// sources,
 * inject and smoke unless the plan says no. */
enum batch_stage {
  BATCH_FETCH,
  BATCH_CONVERT,
  BATCH_INJECT,
  BATCH_SMOKE,
  BATCH_N_STAGES,
};

/* One server of the plan, with [defaults] applied and paths absolute. */
struct batch_server {
  char *name;
  int line;                     /* its [NAME] header */
  char *source;                 /* image, bundle dir/tar, or ssh://... */
  int source_line;
  bool source_ssh;
  char *fetched;                /* ssh: where the fetch stage puts it */
  char *ssh_config;             /* ssh: scp -F FILE; NULL: the user's */
  char *output;                 /* the image convert writes */
  int output_line;              /* where the plan set it (or the header) */
  char *output_dir;             /* output's directory: logs go there */
  char *format;                 /* "qcow2" or "raw" */
  int compress;                 /* 0 no, 1-9 zlib level */
  bool inject, smoke;
  unsigned vcpus;               /* 0: smoke's default */
  unsigned memory_mb;           /* 0: smoke's default */
  char *mac;                    /* NULL: the guest's / smoke's default */
  char *accel;                  /* NULL: auto (or $P2V_ACCEL) */
  unsigned smoke_timeout;       /* 0: smoke's default */
  /* Files beside the output. */
  char *log, *convert_json, *smoke_json, *console_log;
};

struct batch_plan {
  char *path;                   /* as given */
  char *abs_path;               /* absolute */
  char *dir;                    /* its directory, absolute */
  char *batch_dir;              /* report.json/.html: [defaults] output-dir, or dir */
  char *state_path;             /* PLAN.state */
  unsigned jobs;                /* [defaults] jobs; 0: not set */
  struct batch_server *servers;
  size_t n_servers;
};

/* Parse and validate PATH.  Every problem is reported as one line
 * "PATH:LINE: what" through p2v_error, in line order.  Returns
 * NULL on error.  No file is created or changed. */
struct batch_plan *batch_plan_load (const char *path);
void batch_plan_free (struct batch_plan *plan);

/* The stages a server runs, in order. */
bool batch_stage_enabled (const struct batch_server *s, enum batch_stage st);
const char *batch_stage_name (enum batch_stage st);
int batch_stage_by_name (const char *name);

/* A stage as a command: argv (argv[0] is "p2v" or the tool), where
 * stdout and stderr go.  out_append: append stdout instead of truncating;
 * err_to_out: stderr goes with stdout (2>&1). */
struct batch_command {
  char **argv;                  /* NULL-terminated */
  const char *stdout_path;      /* NULL: inherit */
  bool out_append;
  const char *stderr_path;      /* appended; NULL: inherit */
  bool err_to_out;
  bool shell;                   /* argv is {"sh", "-c", LINE}: fetch */
};
void batch_command_build (const struct batch_server *s, enum batch_stage st,
                          struct batch_command *cmd);
void batch_command_free (struct batch_command *cmd);
/* The command as one shell line, quoted so `bash -c LINE` runs it. */
char *batch_command_line (const struct batch_command *cmd);
/* Quote one word for a POSIX shell (unchanged when it is safe). */
char *batch_shell_quote (const char *word);

/* Default --jobs: one per core, at most one per 2 GiB of available
 * memory above a 1 GiB reserve, at least 1.  Exposed for the tests. */
unsigned batch_default_jobs (long cores, uint64_t mem_available_bytes);

/* Relative path from directory FROM to TO when TO lies under FROM, else
 * TO itself (both absolute).  Caller frees. */
char *batch_path_from (const char *from, const char *to);

/* HTML-escape TEXT (&, <, >, ", '). Caller frees. */
char *batch_html_escape (const char *text);

/* The report: one JSON object per server in plan order, from the state
 * and the files the stages wrote.  Writes BATCH_DIR/report.json and
 * report.html atomically. */
int batch_report_write (const struct batch_plan *plan, json_object *report);
json_object *batch_report_build (const struct batch_plan *plan,
                                 json_object *state);
void batch_report_print_table (json_object *report, FILE *f);

/* State: { "version": 1, "plan": PATH, "servers": { NAME: {...} } }.
 * Load returns a new empty state when the file does not exist (and sets
 * *existed false), NULL on error. */
json_object *batch_state_load (const char *path, bool *existed);
int batch_state_save (const char *path, json_object *state);
json_object *batch_state_server (json_object *state, const char *name);

int cmd_batch (int argc, char **argv);
extern const char cmd_batch_help[];

#endif /* P2V_BATCH_H */

// SPDX-License-Identifier: GPL-2.0
/*
 * The kernel's static inline functions that mmscope's Rust code calls and the
 * kernel crate has no helper for, compiled here so that Rust calls the real
 * thing (its checks, tracepoints and lockdep annotations included), as
 * rust/helpers/ does in-tree. Each is a plain call of the function it is named
 * after, or the few lines of a static function of the kernel's that is not
 * exported (said where); the Rust declarations are in vm_ops.rs and mm_ext.rs.
 */

#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/fs.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/mm.h>
#include <linux/mmap_lock.h>
#include <linux/ptrace.h>
#include <linux/rcupdate.h>
#include <linux/sched/coredump.h>
#include <linux/sched/exec_state.h>

void mmscope_get_page(struct page *page);
void mmscope_put_page(struct page *page);
int mmscope_mmap_read_lock_killable(struct mm_struct *mm);
unsigned long mmscope_get_mm_counter_sum(struct mm_struct *mm, int member);
struct task_struct *mmscope_ptrace_parent(struct task_struct *task);
bool mmscope_ptrace_has_cap_noaudit(struct task_struct *task);
bool mmscope_task_still_dumpable_noaudit(struct task_struct *task);
int mmscope_file_hold_module(struct file *file);

void mmscope_get_page(struct page *page)
{
	get_page(page);
}

void mmscope_put_page(struct page *page)
{
	put_page(page);
}

int mmscope_mmap_read_lock_killable(struct mm_struct *mm)
{
	return mmap_read_lock_killable(mm);
}

unsigned long mmscope_get_mm_counter_sum(struct mm_struct *mm, int member)
{
	return get_mm_counter_sum(mm, member);
}

/* The caller holds the RCU read lock, which keeps the tracer valid. */
struct task_struct *mmscope_ptrace_parent(struct task_struct *task)
{
	return ptrace_parent(task);
}

/*
 * ptrace_has_cap(__task_cred(task)->user_ns, PTRACE_MODE_NOAUDIT), the
 * capability rule of ptrace_may_access() (kernel/ptrace.c): CAP_SYS_PTRACE in
 * the target's user namespace, without an audit record when it is missing.
 */
bool mmscope_ptrace_has_cap_noaudit(struct task_struct *task)
{
	bool ret;

	rcu_read_lock();
	ret = ns_capable_noaudit(__task_cred(task)->user_ns, CAP_SYS_PTRACE);
	rcu_read_unlock();
	return ret;
}

/*
 * task_still_dumpable(task, PTRACE_MODE_NOAUDIT) (kernel/ptrace.c), after the
 * smp_rmb() __ptrace_may_access() puts before it: the dumpability is read
 * after what the caller checked first (the tracer, the credentials), pairing
 * with commit_creds(), so that a task that drops privileges and becomes
 * non-dumpable is not seen half-way. task_exec_state_rcu() is not exported;
 * its dereference is written out (the caller holds exec_update_lock, under
 * which exec_state is not replaced).
 */
bool mmscope_task_still_dumpable_noaudit(struct task_struct *task)
{
	const struct task_exec_state *es;

	smp_rmb();
	guard(rcu)();
	es = rcu_dereference(task->exec_state);
	if (READ_ONCE(es->dumpable) == TASK_DUMPABLE_OWNER)
		return true;
	return ns_capable_noaudit(es->user_ns, CAP_SYS_PTRACE);
}

/*
 * The file operations of the device with their owner set, for kernels whose
 * kernel crate builds a miscdevice's file_operations without one (Linux 7.2;
 * 7.3 sets .owner). Copied from the first open file's, once.
 */
static struct file_operations mmscope_owned_fops;
static bool mmscope_owned_fops_ready;
static DEFINE_MUTEX(mmscope_owned_fops_lock);

/*
 * From the device's ->open: make the file hold the module, as every file does
 * whose operations have an owner. Without one (Linux 7.2), neither the open
 * file nor the mappings that hold it keep the module loaded, and rmmod would
 * free the code their operations point to. So give the file a copy of its
 * operations with the owner set, the way misc_open() gives it the device's:
 * replace_fops() with a reference fops_get() took, which fops_put() in
 * __fput() drops after ->release. Nothing to do where the owner is set.
 */
int mmscope_file_hold_module(struct file *file)
{
	const struct file_operations *fops;

	if (file->f_op->owner)
		return 0;
	mutex_lock(&mmscope_owned_fops_lock);
	if (!mmscope_owned_fops_ready) {
		mmscope_owned_fops = *file->f_op;
		mmscope_owned_fops.owner = THIS_MODULE;
		mmscope_owned_fops_ready = true;
	}
	mutex_unlock(&mmscope_owned_fops_lock);
	fops = fops_get(&mmscope_owned_fops);
	if (!fops)
		return -ENODEV;
	replace_fops(file, fops);
	return 0;
}

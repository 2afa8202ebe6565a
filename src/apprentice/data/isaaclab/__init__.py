"""Isaac Lab's HDF5 demo files (its `HDF5DatasetFileHandler` layout), read as a `DemoSource`
(`IsaacLabSource`) and written from any `DemoSource` (`write_isaaclab`).

    file attr format_version   1: quaternions stored (x, y, z, w); absent (0): (w, x, y, z)
    data                       attrs: total (frames), env_args (JSON: env_name, type 2)
      demo_<i>                 attrs: num_samples, seed, success
        actions                (T, A)
        processed_actions      (T, A')   optional; not read
        obs/<term>             (T, ...)  a term may sit in nested groups: obs/<group>/<term>
        obs/datagen_info/      Isaac Lab Mimic's annotation:
          eef_pose/<eef>                   (T, 4, 4)
          target_eef_pose/<eef>            (T, 4, 4)
          object_pose/<object>             (T, 4, 4)
          subtask_term_signals/<signal>    (T,) bool
        initial_state/<kind>/<asset>/<field>   (1, ...)  the scene after reset
        states/<kind>/<asset>/<field>          (T, ...)  the scene after each step
      (kind: articulation: root_pose (7: pos 3 + quat 4), root_velocity (6), joint_position (J),
       joint_velocity (J); rigid_object: root_pose, root_velocity; deformable_object:
       nodal_position, nodal_velocity)
    mask/<name>                (M,) bytes: demo names (robomimic's filters, where present)

How it maps onto apprentice:

- obs keys: a term's own name (`eef_pos`) where no other term has that name; else its path
  below obs/ with "/" replaced by "__" (`policy__joint_pos`). Keys never hold "/" (the store
  nests on it), "." (a camera key names a torch module) or "," (the CLI lists keys with it).
  obs/datagen_info is not an observation. An `obs` array (a policy group recorded with
  concatenated terms) is the key "policy".
- quaternions: the file stores them in format_version's order. apprentice's observations hold
  them in the order of the task their env_args name (`quat_order`): (x, y, z, w) for a
  robosuite task (robomimic's env type 1, e.g. robot0_eef_quat), else MuJoCo's (w, x, y, z)
  (apprentice's built-in tasks). Every obs term whose name ends in "quat" with 4 values per step
  is turned from the file's order into that of the env_args `IsaacLabSource.env_args` gives (the
  ones apprentice kept in the file, else (w, x, y, z) for a file Isaac Lab wrote) on read, and
  from the order of the source's env_args into the file's on write. The quaternion of every
  scene `root_pose` (pos 3 + quat 4) is read (w, x, y, z). `notes` says what was reordered, or
  that nothing needed to be. Quaternions packed inside other terms cannot be told apart and are
  left as stored.
- states: apprentice's states[t] is the scene before action t; Isaac Lab records the scene
  after reset (initial_state) and after each step (states). So the (T, S) states are
  initial_state then states[:-1]; a demo lacking either has none. S is every array of the
  scene flattened per step in `state_layout` order: kinds articulation, deformable_object,
  rigid_object (then any other, by name), assets by name, fields in the order listed above.
- datagen_info: eef_pose and target_pose of one end-effector (the one named at open, else the
  first by name; `notes` says when there were several), object_poses from object_pose,
  subtask_term_signals as int8 in {0, 1}, gripper_action from obs/datagen_info/gripper_action
  where stored, else the last action dim (what Mimic's Franka environments'
  `actions_to_gripper_actions` take).
- env_args: apprentice's own where the file keeps them (env_args["apprentice_env_args"]), else
  {env_name, env_type: type, env_kwargs: every other key}; the file's are `isaaclab_env_args`.
- data/demo_<i>/apprentice/ holds what Isaac Lab has no field for: next_obs/<key>, rewards,
  dones, and states without asset names (T, S), in apprentice's order. Isaac Lab's loader reads
  it into the episode and nothing there uses it.

Modules: `layout` (the format's facts shared by both directions, and `is_isaaclab`),
`validate` (the checks made on open), `reader` (`IsaacLabSource`), `writer` (`write_isaaclab`).
"""

from apprentice.data.isaaclab.layout import (
    FORMAT_VERSIONS,
    StateField,
    is_isaaclab,
    obs_key_names,
    quat_offset,
    quat_order,
    reorder_quat,
)
from apprentice.data.isaaclab.reader import IsaacLabSource
from apprentice.data.isaaclab.writer import write_isaaclab

__all__ = [
    "FORMAT_VERSIONS",
    "IsaacLabSource",
    "StateField",
    "is_isaaclab",
    "obs_key_names",
    "quat_offset",
    "quat_order",
    "reorder_quat",
    "write_isaaclab",
]
